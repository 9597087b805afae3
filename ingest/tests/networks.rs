//! The network databases (`[enrich] asn_database`, `country_database`) read from a real
//! MaxMind-format file, written by `deploy/dev/make_mmdb.py`: every layout field found,
//! addresses outside it unknown, and a changed file read again.

mod common;

use dmarc_ingest::config::EnrichConfig;
use dmarc_ingest::enrich::networks::{Network, Networks};

fn network(asn: u32, as_org: &str, country: &str) -> Network {
    Network {
        asn,
        as_org: as_org.into(),
        country: country.into(),
    }
}

#[test]
fn one_file_gives_asn_organisation_and_country_of_v4_and_v6_addresses() {
    let dir = tempfile::tempdir().unwrap();
    let file = common::networks::test_database(dir.path());
    let config = EnrichConfig {
        asn_database: Some(file.clone()),
        country_database: Some(file),
        ..EnrichConfig::default()
    };
    let networks = Networks::open(&config).unwrap();
    let lookup = |ip: &str| networks.lookup(ip.parse().unwrap());
    assert_eq!(
        lookup("192.0.2.1"),
        network(64496, "EXAMPLE-MAIL-NET", "GB")
    );
    assert_eq!(
        lookup("198.51.100.200"),
        network(64497, "EXAMPLE-HOSTING", "DE")
    );
    assert_eq!(lookup("203.0.113.9"), network(64498, "", "FR"));
    assert_eq!(
        lookup("203.0.113.200"),
        network(64499, "EXAMPLE-BULK-SENDER", "US")
    );
    assert_eq!(lookup("2001:db8::1"), network(64500, "EXAMPLE-V6", "NL"));
    assert_eq!(lookup("10.0.0.1"), Network::default());
    assert_eq!(lookup("2001:db9::1"), Network::default());
    assert!(networks
        .version()
        .contains("dmarc-ingest-test-ASN-Country@"));

    // Only a country database: no AS numbers.
    let only_country = Networks::open(&EnrichConfig {
        country_database: config.country_database.clone(),
        ..EnrichConfig::default()
    })
    .unwrap();
    assert_eq!(
        only_country.lookup("192.0.2.1".parse().unwrap()),
        network(0, "", "GB")
    );
}

#[test]
fn a_changed_file_is_read_again_and_a_broken_one_is_not_taken() {
    let dir = tempfile::tempdir().unwrap();
    let tsv = dir.path().join("networks.tsv");
    let file = dir.path().join("asn.mmdb");
    std::fs::write(&tsv, "192.0.2.0/24\t64496\tBEFORE\tGB\n").unwrap();
    common::networks::write_database(&tsv, &file);
    let mut networks = Networks::open(&EnrichConfig {
        asn_database: Some(file.clone()),
        ..EnrichConfig::default()
    })
    .unwrap();
    let ip = "192.0.2.1".parse().unwrap();
    assert_eq!(networks.lookup(ip).as_org, "BEFORE");

    // Unchanged: kept. Changed (a longer organisation: another size): read again.
    networks.reload_if_changed();
    assert_eq!(networks.lookup(ip).as_org, "BEFORE");
    std::fs::write(&tsv, "192.0.2.0/24\t64511\tAFTER-THE-CHANGE\tGB\n").unwrap();
    common::networks::write_database(&tsv, &file);
    networks.reload_if_changed();
    assert_eq!(networks.lookup(ip), network(64511, "AFTER-THE-CHANGE", ""));

    // A file that is no database: the one read before stays.
    std::fs::write(&file, b"not a database at all").unwrap();
    networks.reload_if_changed();
    assert_eq!(networks.lookup(ip).asn, 64511);

    // Opening a file that is no database fails, naming it.
    let e = Networks::open(&EnrichConfig {
        asn_database: Some(file.clone()),
        ..EnrichConfig::default()
    })
    .err()
    .unwrap();
    assert!(e.contains("asn.mmdb"), "{e}");
}
