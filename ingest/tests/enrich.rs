//! `dmarc-ingest enrich` against the real ClickHouse and the real DNS server of
//! `deploy/dev/dns.sh`: names land in `source_names` and show through `records_enriched`;
//! lookups that failed are not stored and are asked again; ingestion never needs DNS.

mod common;

use common::clickhouse::TestDb;

/// One report whose sources meet every kind of DNS answer of the test zones.
fn report_with_sources(dir: &std::path::Path) -> std::path::PathBuf {
    let sources = [
        "192.0.2.1",    // mail.example.test, confirmed
        "192.0.2.2",    // liar.example.test, whose A record is another address
        "192.0.2.4",    // no PTR: NXDOMAIN
        "198.51.100.1", // SERVFAIL
        "203.0.113.1",  // no answer at all
        "2001:db8::1",  // mail6.example.test, confirmed
    ];
    let records: String = sources
        .iter()
        .map(|ip| {
            format!(
                "<record><row><source_ip>{ip}</source_ip><count>3</count><policy_evaluated>\
                 <disposition>none</disposition><dkim>fail</dkim><spf>fail</spf>\
                 </policy_evaluated></row><identifiers><header_from>example.com</header_from>\
                 </identifiers><auth_results><spf><domain>example.com</domain><result>fail</result>\
                 </spf></auth_results></record>"
            )
        })
        .collect();
    let xml = format!(
        "<?xml version=\"1.0\"?><feedback><report_metadata><org_name>receiver.example</org_name>\
         <email>dmarc@receiver.example</email><report_id>enrich-1</report_id><date_range>\
         <begin>1717200000</begin><end>1717286399</end></date_range></report_metadata>\
         <policy_published><domain>example.com</domain><p>none</p></policy_published>{records}</feedback>"
    );
    let path = dir.join("sources.xml");
    std::fs::write(&path, xml).unwrap();
    path
}

fn names(db: &TestDb) -> Vec<(String, String, String, String)> {
    db.rows(
        "SELECT source_ip, ptr_status, ptr, ptr_unconfirmed FROM {database}.records_enriched \
         ORDER BY source_ip",
    )
    .into_iter()
    .map(|f| (f[0].clone(), f[1].clone(), f[2].clone(), f[3].clone()))
    .collect()
}

fn row(ip: &str, status: &str, ptr: &str, unconfirmed: &str) -> (String, String, String, String) {
    (ip.into(), status.into(), ptr.into(), unconfirmed.into())
}

#[test]
fn names_of_stored_sources_are_looked_up_and_failures_asked_again() {
    let dns = common::dns::shared_dns();
    let db = TestDb::fresh("enrich");
    let dir = tempfile::tempdir().unwrap();
    let report = report_with_sources(dir.path()).display().to_string();

    // Ingestion needs no DNS at all: the records are stored with no names yet.
    let out = db.cli(&["import", &report]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(names(&db).iter().all(|(_, status, _, _)| status.is_empty()));

    // The resolver unreachable: nothing is stored, exit 3 (a server failed us).
    let out = db
        .command(&["enrich", "--all"])
        .env("DMARC_INGEST_DNS_NAMESERVERS", "127.0.0.1:5355")
        .env("DMARC_INGEST_DNS_TIMEOUT_MS", "200")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(3), "{stderr}");
    assert!(stderr.contains("6 failed"), "{stderr}");
    // Each still gets a row naming what is known without DNS, expired at once.
    assert_eq!(
        db.number(
            "SELECT count() FROM {database}.source_names \
             WHERE ptr_status = 'failed' AND expires_at < now() AND resolved_at = 0"
        ),
        6
    );

    // The DNS server back: every answer is stored, except the two lookups that failed.
    let nameserver = dns.nameservers[0].clone();
    let enrich = || {
        db.command(&["enrich", "--since", "2024-05-01"])
            .env("DMARC_INGEST_DNS_NAMESERVERS", &nameserver)
            .env("DMARC_INGEST_DNS_TIMEOUT_MS", "300")
            .output()
            .unwrap()
    };
    let out = enrich();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(
        stderr.contains("6 addresses looked up: 2 named, 1 with a name that does not point back, 1 without a name, 2 failed"),
        "{stderr}"
    );
    assert_eq!(
        names(&db),
        vec![
            row("192.0.2.1", "confirmed", "mail.example.test", ""),
            row("192.0.2.2", "unconfirmed", "", "liar.example.test"),
            row("192.0.2.4", "absent", "", ""),
            row("198.51.100.1", "failed", "", ""),
            row("2001:db8::1", "confirmed", "mail6.example.test", ""),
            row("203.0.113.1", "failed", "", ""),
        ]
    );
    assert_eq!(
        db.number("SELECT count() FROM {database}.records_enriched WHERE ptr_org = 'example.test'"),
        2
    );
    // Again: only the two that failed are asked (the others are current).
    let out = enrich();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("2 addresses looked up"), "{stderr}");
    assert_eq!(
        db.number("SELECT count() FROM {database}.source_names WHERE resolved_at > 0"),
        4
    );

    // Reports older than --since are not looked at; a bad date is a usage error.
    let out = db
        .command(&["enrich", "--since", "2024-06-02"])
        .env("DMARC_INGEST_DNS_NAMESERVERS", &nameserver)
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&out.stderr).contains("0 addresses looked up"));
    let out = db.cli(&["enrich", "--since", "June"]);
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn a_run_reads_its_addresses_a_page_at_a_time_and_asks_each_once() {
    // Pages of 2 over the 6 sources: 3 pages; the two that fail are not stored, and the
    // run still asks each address once (it walks the addresses in order).
    use dmarc_ingest::enrich::networks::Networks;
    use dmarc_ingest::enrich::services::Services;
    use dmarc_ingest::enrich::{enrich_stored, Enricher};
    use dmarc_ingest::resolver::Resolver;
    use dmarc_ingest::store::sources::Since;
    use dmarc_ingest::store::Store;
    let dns = common::dns::shared_dns();
    let db = TestDb::fresh("enrich_pages");
    let dir = tempfile::tempdir().unwrap();
    let report = report_with_sources(dir.path()).display().to_string();
    assert!(db.cli(&["import", &report]).status.success());
    let pages = std::sync::atomic::AtomicU64::new(0);
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let store = runtime.block_on(Store::connect(&db.config())).unwrap();
    let enricher = Enricher::with_parts(
        Resolver::new(&dns).unwrap(),
        Networks::none(),
        Services::load(None).unwrap(),
        100,
    );
    let summary = runtime.block_on(async {
        enrich_stored(&store, &enricher, &Since::All, None, 2, &|step| {
            if let dmarc_ingest::enrich::Progress::More(n) = step {
                assert_eq!(n, 2);
                pages.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            }
        })
        .await
        .unwrap()
    });
    assert_eq!(pages.into_inner(), 3);
    assert_eq!(
        (
            summary.pending,
            summary.confirmed,
            summary.unconfirmed,
            summary.absent,
            summary.failed
        ),
        (6, 2, 1, 1, 2)
    );
    assert_eq!(
        db.number("SELECT count() FROM {database}.source_names WHERE resolved_at > 0"),
        4
    );

    // A pass over records stored from a time on sees only those: none stored since a
    // minute from now; every record stored since a minute ago (the two failed, again).
    let now = dmarc_ingest::store::now();
    let later = runtime
        .block_on(enrich_stored(
            &store,
            &enricher,
            &Since::All,
            Some(now + 60),
            100,
            &|_| {},
        ))
        .unwrap();
    assert_eq!(later.pending, 0);
    let recent = runtime
        .block_on(enrich_stored(
            &store,
            &enricher,
            &Since::All,
            Some(now - 60),
            100,
            &|_| {},
        ))
        .unwrap();
    assert_eq!((recent.pending, recent.failed), (2, 2));

    // The stored names lost: the same enricher names the four answered addresses again
    // from memory, without DNS; the two that failed are asked again.
    db.sql(&format!("TRUNCATE TABLE {}.source_names", db.database));
    let again = runtime
        .block_on(enrich_stored(
            &store,
            &enricher,
            &Since::All,
            None,
            100,
            &|_| {},
        ))
        .unwrap();
    assert_eq!((again.pending, again.cached, again.failed), (6, 4, 2));
    assert_eq!(
        db.number("SELECT count() FROM {database}.source_names WHERE resolved_at > 0"),
        4
    );
}

/// One record of the mixed report: source, SPF domain and result, DKIM domain and result.
struct Source {
    ip: &'static str,
    spf: (&'static str, &'static str),
    dkim: Option<(&'static str, &'static str)>,
}

fn mixed_report(dir: &std::path::Path, sources: &[Source]) -> std::path::PathBuf {
    let records: String = sources
        .iter()
        .map(|s| {
            let dkim = s
                .dkim
                .map(|(d, r)| format!("<dkim><domain>{d}</domain><result>{r}</result></dkim>"))
                .unwrap_or_default();
            format!(
                "<record><row><source_ip>{}</source_ip><count>5</count><policy_evaluated>\
                 <disposition>none</disposition><dkim>fail</dkim><spf>fail</spf>\
                 </policy_evaluated></row><identifiers><header_from>council-a.example</header_from>\
                 </identifiers><auth_results>{dkim}<spf><domain>{}</domain><result>{}</result>\
                 </spf></auth_results></record>",
                s.ip, s.spf.0, s.spf.1
            )
        })
        .collect();
    let xml = format!(
        "<?xml version=\"1.0\"?><feedback><report_metadata><org_name>receiver.example</org_name>\
         <email>dmarc@receiver.example</email><report_id>naming-1</report_id><date_range>\
         <begin>1717200000</begin><end>1717286399</end></date_range></report_metadata>\
         <policy_published><domain>council-a.example</domain><p>none</p></policy_published>{records}</feedback>"
    );
    let path = dir.join("mixed.xml");
    std::fs::write(&path, xml).unwrap();
    path
}

#[test]
fn a_mixed_report_gets_the_expected_sender_and_service_for_every_record() {
    let dns = common::dns::shared_dns();
    let db = TestDb::fresh("enrich_naming");
    let dir = tempfile::tempdir().unwrap();
    let networks = common::networks::test_database(dir.path());
    let services = dir.path().join("services.toml");
    std::fs::write(
        &services,
        "[[service]]\nname = \"Example Relay\"\ntype = \"crm\"\nptr = [\"mail6.example.test\"]\n",
    )
    .unwrap();
    let spoofed = ("council-a.example", "fail");
    let sources = [
        // A confirmed name no service claims: named by its organisational domain.
        Source {
            ip: "192.0.2.1",
            spf: spoofed,
            dkim: None,
        },
        // A name that does not point back (a spoofer's claim): named by its network.
        Source {
            ip: "192.0.2.2",
            spf: spoofed,
            dkim: Some(("council-a.example", "fail")),
        },
        // A Microsoft 365 outbound host by its confirmed reverse name (built-in data).
        Source {
            ip: "192.0.2.44",
            spf: ("council-a.example", "pass"),
            dkim: None,
        },
        // No reverse name; a passing SPF check of Amazon SES's bounce domain.
        Source {
            ip: "192.0.2.4",
            spf: ("eu-west-1.amazonses.com", "pass"),
            dkim: None,
        },
        // No reverse name; SPF fails, a passing DKIM signature of SendGrid.
        Source {
            ip: "192.0.2.5",
            spf: spoofed,
            dkim: Some(("sendgrid.net", "pass")),
        },
        // A failing SendGrid signature names nobody: the network does.
        Source {
            ip: "192.0.2.6",
            spf: spoofed,
            dkim: Some(("sendgrid.net", "fail")),
        },
        // DNS fails (SERVFAIL): still named by its network, asked again later.
        Source {
            ip: "198.51.100.7",
            spf: spoofed,
            dkim: None,
        },
        // DNS never answers; a network without an organisation.
        Source {
            ip: "203.0.113.9",
            spf: spoofed,
            dkim: None,
        },
        // The user's services file names this host.
        Source {
            ip: "2001:db8::1",
            spf: spoofed,
            dkim: None,
        },
    ];
    let report = mixed_report(dir.path(), &sources).display().to_string();
    assert!(db.cli(&["import", &report]).status.success());

    let out = db
        .command(&["enrich", "--all"])
        .env("DMARC_INGEST_DNS_NAMESERVERS", &dns.nameservers[0])
        .env("DMARC_INGEST_DNS_TIMEOUT_MS", "300")
        .env("DMARC_INGEST_ENRICH_ASN_DATABASE", &networks)
        .env("DMARC_INGEST_ENRICH_COUNTRY_DATABASE", &networks)
        .env("DMARC_INGEST_ENRICH_SERVICES_FILE", &services)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(stderr.contains("4 known services"), "{stderr}");

    let named = db.rows(
        "SELECT source_ip, sender, service, service_type, toString(asn), as_org, country \
         FROM {database}.records_enriched ORDER BY source_ip",
    );
    let expected = [
        [
            "192.0.2.1",
            "example.test",
            "",
            "",
            "64496",
            "EXAMPLE-MAIL-NET",
            "GB",
        ],
        [
            "192.0.2.44",
            "Microsoft 365",
            "Microsoft 365",
            "mailbox provider",
            "64496",
            "EXAMPLE-MAIL-NET",
            "GB",
        ],
        [
            "192.0.2.2",
            "EXAMPLE-MAIL-NET",
            "",
            "",
            "64496",
            "EXAMPLE-MAIL-NET",
            "GB",
        ],
        [
            "192.0.2.4",
            "Amazon SES",
            "Amazon SES",
            "transactional",
            "64496",
            "EXAMPLE-MAIL-NET",
            "GB",
        ],
        [
            "192.0.2.5",
            "SendGrid",
            "SendGrid",
            "transactional",
            "64496",
            "EXAMPLE-MAIL-NET",
            "GB",
        ],
        [
            "192.0.2.6",
            "EXAMPLE-MAIL-NET",
            "",
            "",
            "64496",
            "EXAMPLE-MAIL-NET",
            "GB",
        ],
        [
            "198.51.100.7",
            "EXAMPLE-HOSTING",
            "",
            "",
            "64497",
            "EXAMPLE-HOSTING",
            "DE",
        ],
        [
            "2001:db8::1",
            "Example Relay",
            "Example Relay",
            "crm",
            "64500",
            "EXAMPLE-V6",
            "NL",
        ],
        [
            "203.0.113.9",
            "unknown (AS64498)",
            "",
            "",
            "64498",
            "",
            "FR",
        ],
    ];
    let mut expected: Vec<Vec<String>> = expected
        .iter()
        .map(|r| r.iter().map(|f| f.to_string()).collect())
        .collect();
    expected.sort();
    assert_eq!(named, expected);
    // No record is named by the domain it claims to be from.
    assert_eq!(
        db.number(
            "SELECT count() FROM {database}.records_enriched WHERE sender LIKE '%council-a%'"
        ),
        0
    );

    // Another services file: every address is named again (its reverse name from the
    // cache of this run's process is gone, so DNS answers again), the old names replaced.
    std::fs::write(
        &services,
        "[[service]]\nname = \"Example Mail\"\ntype = \"hosting\"\nasn = [64496]\n",
    )
    .unwrap();
    std::thread::sleep(std::time::Duration::from_secs(1));
    let out = db
        .command(&["enrich", "--all"])
        .env("DMARC_INGEST_DNS_NAMESERVERS", &dns.nameservers[0])
        .env("DMARC_INGEST_DNS_TIMEOUT_MS", "300")
        .env("DMARC_INGEST_ENRICH_ASN_DATABASE", &networks)
        .env("DMARC_INGEST_ENRICH_SERVICES_FILE", &services)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("9 addresses looked up"), "{stderr}");
    assert_eq!(
        db.rows(
            "SELECT sender, country FROM {database}.records_enriched WHERE source_ip = '192.0.2.1'"
        ),
        vec![vec!["Example Mail".to_string(), String::new()]]
    );
}
