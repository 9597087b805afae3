//! The test network database: `deploy/dev/networks.tsv` written as a MaxMind-format file
//! by `deploy/dev/make_mmdb.py` (the same the demo uses): documentation ranges and AS
//! numbers, with AS organisations and countries.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Command;

use super::repo_root;

/// Writes the database of `tsv` (networks, AS numbers, organisations, countries) to
/// `out`.
pub fn write_database(tsv: &Path, out: &Path) {
    let result = Command::new("python3")
        .arg(repo_root().join("deploy/dev/make_mmdb.py"))
        .arg(tsv)
        .arg(out)
        .output()
        .unwrap();
    assert!(
        result.status.success(),
        "make_mmdb.py: {}",
        String::from_utf8_lossy(&result.stderr)
    );
}

/// The test networks database, written into `dir`.
pub fn test_database(dir: &Path) -> PathBuf {
    let out = dir.join("networks.mmdb");
    write_database(&repo_root().join("deploy/dev/networks.tsv"), &out);
    out
}
