//! Command line: arguments -> the command run, and its exit code (0 when everything
//! went through, 1 when any input failed, 2 on a usage or configuration error).

use std::io::{BufRead, Write};
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

use crate::config::Config;
use crate::input::{self, Flow, InputError, ReportSink};
use crate::report::ReportReader;
use crate::rows::{self, Format, RowWriter};

/// Streams DMARC aggregate reports from IMAP or files into ClickHouse.
#[derive(Debug, Parser)]
#[command(name = "dmarc-ingest", version, about)]
pub struct Cli {
    /// TOML configuration file; every key can also be set as DMARC_INGEST_<SECTION>_<KEY>.
    #[arg(long, global = true, env = "DMARC_INGEST_CONFIG")]
    pub config: Option<PathBuf>,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Parse report files (.xml, .xml.gz, .zip, .eml, mbox, directories) and print one row
    /// per record to stdout.
    Parse {
        /// Output format.
        #[arg(long, value_enum, default_value = "jsonl")]
        format: Format,
        /// Files or directories (walked recursively).
        #[arg(required = true)]
        paths: Vec<PathBuf>,
    },
}

/// Parses the process arguments and runs the command.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    let filter = tracing_subscriber::EnvFilter::try_from_env("DMARC_INGEST_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
    let config = match Config::load(cli.config.as_deref()) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(2);
        }
    };
    match cli.command {
        Command::Parse { format, paths } => parse(&config, format, &paths),
    }
}

/// `parse`: rows to stdout, one error line per failed input on stderr.
fn parse(config: &Config, format: Format, paths: &[PathBuf]) -> ExitCode {
    let stdout = std::io::stdout().lock();
    let mut sink = PrintRows {
        writer: RowWriter::new(format, std::io::BufWriter::with_capacity(1 << 16, stdout)),
        failures: 0,
    };
    let flow = input::read_paths(paths, &config.limits, &mut sink);
    let flushed = sink.writer.flush();
    if flow == Flow::Stop || flushed.is_err() {
        // stdout closed (a pipe into `head`): not an input failure.
        return ExitCode::from(if sink.failures > 0 { 1 } else { 0 });
    }
    if sink.failures > 0 {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    }
}

/// Prints rows; counts failures and prints each on stderr.
struct PrintRows<W: Write> {
    writer: RowWriter<W>,
    failures: u64,
}

impl<W: Write> ReportSink for PrintRows<W> {
    fn report(
        &mut self,
        source: &str,
        reader: &mut ReportReader<&mut dyn BufRead>,
    ) -> Result<Flow, InputError> {
        while let Some(record) = reader.next_record()? {
            let row = rows::record_row(source, reader.header(), &record);
            if let Err(e) = self.writer.write(&row) {
                if e.kind() == std::io::ErrorKind::BrokenPipe {
                    return Ok(Flow::Stop);
                }
                return Err(InputError::Sink {
                    message: format!("cannot write output: {e}"),
                    transient: false,
                });
            }
        }
        Ok(Flow::Continue)
    }

    fn failure(&mut self, source: &str, error: &InputError) -> Flow {
        self.failures += 1;
        eprintln!("error: {source}: {error}");
        Flow::Continue
    }
}
