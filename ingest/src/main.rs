//! The `dmarc-ingest` binary: see [`dmarc_ingest::cli`].

/// mimalloc: the parser allocates many small strings on one thread and the ClickHouse
/// writer frees them on another, where glibc's malloc spends a quarter of the time.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    dmarc_ingest::cli::main()
}
