//! The `dmarc-ingest` binary: see [`dmarc_ingest::cli`].

fn main() -> std::process::ExitCode {
    dmarc_ingest::cli::main()
}
