//! `gen-report`: writes a synthetic DMARC aggregate report for benchmarks.
//!
//! In: `--records N [--seed S] [--report-id ID] [--begin UNIX] [--dmarcbis] [--gzip] [--out PATH|-]`.
//! Out: the report (XML, or gzip at level 6 with `--gzip`) to PATH or stdout, and one JSON
//! line on stderr: `{"records":N,"messages":M,"xml_bytes":B}` (B counts uncompressed XML).
//! Exit codes: 0 done, 1 write failed, 2 bad arguments.

use std::fs::File;
use std::io::{self, BufWriter, Write};
use std::process::ExitCode;

use dmarc_ingest_benches::{write_report, GeneratedTotals, ReportSpec};
use flate2::write::GzEncoder;
use flate2::Compression;

const USAGE: &str =
    "usage: gen-report --records N [--seed S] [--report-id ID] [--begin UNIX] [--dmarcbis] [--gzip] [--out PATH|-]";
const GZIP_LEVEL: u32 = 6;
const OUT_BUFFER_BYTES: usize = 256 * 1024;

struct Args {
    spec: ReportSpec,
    gzip: bool,
    /// `None` for stdout.
    out: Option<String>,
}

fn parse_args(mut args: impl Iterator<Item = String>) -> Result<Args, String> {
    let mut spec = ReportSpec::default();
    let mut records = None;
    let mut gzip = false;
    let mut out = None;
    while let Some(arg) = args.next() {
        let (name, inline) = match arg.split_once('=') {
            Some((n, v)) if n.starts_with("--") => (n.to_owned(), Some(v.to_owned())),
            _ => (arg, None),
        };
        let mut value = |what: &str| {
            inline
                .clone()
                .or_else(|| args.next())
                .ok_or_else(|| format!("{name} needs {what}"))
        };
        match name.as_str() {
            "--records" => records = Some(parse_u64(&name, &value("a number")?)?),
            "--seed" => spec.seed = parse_u64(&name, &value("a number")?)?,
            "--out" => {
                let path = value("a path or -")?;
                out = (path != "-").then_some(path);
            }
            "--report-id" => spec.report_id = value("an id")?,
            "--begin" => spec.date_begin = parse_u64(&name, &value("Unix seconds")?)?,
            "--dmarcbis" => spec.dmarcbis = true,
            "--gzip" => gzip = true,
            "-h" | "--help" => return Err(String::new()),
            other => return Err(format!("unknown argument {other:?}")),
        }
    }
    spec.records = records.ok_or("--records is required")?;
    Ok(Args { spec, gzip, out })
}

fn parse_u64(name: &str, value: &str) -> Result<u64, String> {
    value
        .replace('_', "")
        .parse()
        .map_err(|e| format!("{name} {value:?}: {e}"))
}

fn generate(args: &Args) -> io::Result<GeneratedTotals> {
    let sink: Box<dyn Write> = match &args.out {
        Some(path) => Box::new(File::create(path)?),
        None => Box::new(io::stdout().lock()),
    };
    let mut sink = BufWriter::with_capacity(OUT_BUFFER_BYTES, sink);
    let totals = if args.gzip {
        let mut gz = GzEncoder::new(&mut sink, Compression::new(GZIP_LEVEL));
        let totals = write_report(&mut gz, &args.spec)?;
        gz.finish()?;
        totals
    } else {
        write_report(&mut sink, &args.spec)?
    };
    sink.flush()?;
    Ok(totals)
}

fn main() -> ExitCode {
    let args = match parse_args(std::env::args().skip(1)) {
        Ok(args) => args,
        Err(msg) => {
            if !msg.is_empty() {
                eprintln!("gen-report: {msg}");
            }
            eprintln!("{USAGE}");
            return ExitCode::from(2);
        }
    };
    match generate(&args) {
        Ok(t) => {
            eprintln!(
                "{{\"records\":{},\"messages\":{},\"xml_bytes\":{}}}",
                t.records, t.messages, t.bytes
            );
            ExitCode::SUCCESS
        }
        Err(e) => {
            let target = args.out.as_deref().unwrap_or("stdout");
            eprintln!("gen-report: writing {target}: {e}");
            ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Result<Args, String> {
        parse_args(args.iter().map(|s| (*s).to_owned()))
    }

    #[test]
    fn parses_all_options() {
        let a = parse(&[
            "--records",
            "1_000_000",
            "--seed=9",
            "--begin",
            "1700092800",
            "--dmarcbis",
            "--gzip",
            "--out",
            "r.xml.gz",
        ])
        .unwrap();
        assert_eq!(
            (a.spec.records, a.spec.seed, a.spec.dmarcbis),
            (1_000_000, 9, true)
        );
        assert_eq!(a.spec.date_begin, 1_700_092_800);
        assert!(a.gzip);
        assert_eq!(a.out.as_deref(), Some("r.xml.gz"));
    }

    #[test]
    fn defaults_and_stdout() {
        let a = parse(&["--records=5", "--out", "-"]).unwrap();
        assert_eq!(a.spec.seed, ReportSpec::default().seed);
        assert_eq!(a.spec.date_begin, ReportSpec::default().date_begin);
        assert!(!a.gzip && !a.spec.dmarcbis && a.out.is_none());
    }

    #[test]
    fn rejects_bad_arguments() {
        assert!(parse(&[]).is_err());
        assert!(parse(&["--records"]).is_err());
        assert!(parse(&["--records", "many"]).is_err());
        assert!(parse(&["--records", "1", "--frobnicate"]).is_err());
    }
}
