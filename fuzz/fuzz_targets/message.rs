#![no_main]
//! libFuzzer entry point of the `message` target; the harness and its invariants are in
//! `dmarc_ingest_fuzz::message`.

libfuzzer_sys::fuzz_target!(|data: &[u8]| dmarc_ingest_fuzz::message(data));
