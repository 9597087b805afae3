#![no_main]
//! libFuzzer entry point of the `report` target; the harness and its invariants are in
//! `dmarc_ingest_fuzz::report`.

libfuzzer_sys::fuzz_target!(|data: &[u8]| dmarc_ingest_fuzz::report(data));
