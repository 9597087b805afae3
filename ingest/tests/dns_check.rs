//! `dmarc-ingest dns check` against the real DNS server (knot behind dnsmasq, zones
//! `deploy/dev/dns/checks.test.zone` and friends: one domain per finding) and the real
//! ClickHouse: the snapshots in `dns_checks`, and the colours in `domain_status`.

mod common;

use std::collections::BTreeMap;
use std::path::Path;
use std::time::{SystemTime, UNIX_EPOCH};

use common::clickhouse::TestDb;
use common::dns::shared_dns;

/// The central team's address in the test zones (reports.test authorises every domain).
const TEAM: &str = "dmarc@reports.test";

/// (domain, parked, finding codes the snapshot must hold, colour).
const EXPECTED: &[(&str, bool, &[&str], &str)] = &[
    ("good.checks.test", false, &[], "green"),
    (
        "inherited.checks.test",
        false,
        &["dmarc_inherited"],
        "amber",
    ),
    ("nodmarc.test", false, &["dmarc_missing"], "red"),
    ("twodmarc.checks.test", false, &["dmarc_several"], "red"),
    (
        "syntax.checks.test",
        false,
        &["dmarc_bad_policy", "dmarc_bad_pct"],
        "red",
    ),
    ("pnone.checks.test", false, &[], "red"),
    (
        "pct50.checks.test",
        false,
        &["dmarc_pct_below_100"],
        "amber",
    ),
    ("extauth.checks.test", false, &["spf_missing"], "amber"),
    (
        "extnoauth.checks.test",
        false,
        &["dmarc_destination_unauthorised"],
        "amber",
    ),
    (
        "noteam.checks.test",
        false,
        &["dmarc_rua_misses_team"],
        "red",
    ),
    ("spf11.checks.test", false, &["spf_too_many_lookups"], "red"),
    ("plusall.checks.test", false, &["spf_pass_all"], "red"),
    (
        "voidloop.checks.test",
        false,
        &["spf_loop", "spf_too_many_void_lookups"],
        "red",
    ),
    ("parked-right.checks.test", true, &[], "green"),
    ("parked-wrong.checks.test", true, &["spf_missing"], "red"),
    ("nullmx.checks.test", false, &["mx_null_mixed"], "amber"),
    (
        "dkim.checks.test",
        false,
        &["dkim_short_key", "dkim_missing_key"],
        "amber",
    ),
    ("servfail.test", false, &["dns_failure"], "red"),
    ("silent.test", false, &["dns_failure"], "red"),
];

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// A report of yesterday for `domain`: one record per (source, DKIM selector, DKIM
/// result), SPF and the DMARC verdict passing when DKIM does.
fn report(domain: &str, id: &str, signatures: &[(&str, &str)]) -> String {
    let begin = now() - 86_400;
    let records: String = signatures
        .iter()
        .map(|(selector, result)| {
            format!(
                "<record><row><source_ip>192.0.2.1</source_ip><count>10</count><policy_evaluated>\
                 <disposition>none</disposition><dkim>{result}</dkim><spf>{result}</spf>\
                 </policy_evaluated></row><identifiers><header_from>{domain}</header_from>\
                 </identifiers><auth_results><dkim><domain>{domain}</domain><selector>{selector}\
                 </selector><result>{result}</result></dkim><spf><domain>{domain}</domain>\
                 <result>{result}</result></spf></auth_results></record>"
            )
        })
        .collect();
    format!(
        "<?xml version=\"1.0\"?><feedback><report_metadata><org_name>receiver.example</org_name>\
         <email>r@receiver.example</email><report_id>{id}</report_id><date_range>\
         <begin>{begin}</begin><end>{}</end></date_range></report_metadata>\
         <policy_published><domain>{domain}</domain><p>reject</p></policy_published>{records}\
         </feedback>",
        begin + 86_399
    )
}

fn write_domains_file(path: &Path) {
    let mut csv = String::from("domain,owner,group,parked,contact\n");
    for (domain, parked, _, _) in EXPECTED {
        csv.push_str(&format!(
            "{domain},Owner of {domain},Test group,{},dmarc@{domain}\n",
            if *parked { "yes" } else { "no" }
        ));
    }
    std::fs::write(path, csv).unwrap();
}

fn dns_check(db: &TestDb, domains_file: &Path) -> (Option<i32>, String) {
    let dns = shared_dns();
    let out = db
        .command(&["dns", "check"])
        .env("DMARC_INGEST_DNS_NAMESERVERS", &dns.nameservers[0])
        .env("DMARC_INGEST_DNS_TIMEOUT_MS", "300")
        .env("DMARC_INGEST_DNS_ATTEMPTS", "1")
        .env("DMARC_INGEST_DOMAINS_FILE", domains_file)
        .env("DMARC_INGEST_DOMAINS_RUA_ADDRESS", TEAM)
        .output()
        .unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// domain -> the named columns of its latest snapshot, tab-separated as ClickHouse gives.
fn latest(db: &TestDb, columns: &str) -> BTreeMap<String, Vec<String>> {
    db.rows(&format!(
        "SELECT domain, {columns} FROM {}.dns_checks \
         WHERE (domain, checked_at) IN (SELECT domain, max(checked_at) FROM {}.dns_checks GROUP BY domain) \
         ORDER BY domain",
        db.database, db.database
    ))
    .into_iter()
    .map(|mut row| {
        let domain = row.remove(0);
        (domain, row)
    })
    .collect()
}

#[test]
fn every_finding_of_the_test_zones_is_found_and_every_domain_judged() {
    let db = TestDb::fresh("dns_check");
    let dir = tempfile::tempdir().unwrap();
    // Mail signed with the selectors the check must look at; one report for a domain
    // outside the inventory (checked too, not judged).
    for (domain, id, signatures) in [
        ("good.checks.test", "g-1", &[("s2048", "pass")][..]),
        (
            "dkim.checks.test",
            "k-1",
            &[("s512", "fail"), ("gone", "fail")][..],
        ),
        ("seen-only.checks.test", "s-1", &[("x1", "pass")][..]),
    ] {
        std::fs::write(
            dir.path().join(format!("{id}.xml")),
            report(domain, id, signatures),
        )
        .unwrap();
    }
    let imported = db.cli(&["import", &dir.path().display().to_string()]);
    assert!(
        imported.status.success(),
        "{}",
        String::from_utf8_lossy(&imported.stderr)
    );
    let domains_file = dir.path().join("domains.csv");
    write_domains_file(&domains_file);
    let synced = db
        .command(&["domains", "sync"])
        .env("DMARC_INGEST_DOMAINS_FILE", &domains_file)
        .output()
        .unwrap();
    assert!(synced.status.success());

    // Before any check: one red "not checked yet" row per inventory domain.
    let before = db.rows(&format!(
        "SELECT status, reasons[1], dmarc_status FROM {}.domain_status",
        db.database
    ));
    assert_eq!(before.len(), EXPECTED.len());
    assert!(before
        .iter()
        .all(|r| r[0] == "red" && r[1].contains("not checked yet") && r[2] == "none"));

    // pnone.checks.test has published p=none for 120 days (earlier snapshots).
    for days_ago in [120, 60] {
        db.sql(&format!(
            "INSERT INTO {}.dns_checks (checked_at, domain, in_inventory, dmarc_name, dmarc_p) \
             VALUES ({}, 'pnone.checks.test', 1, '_dmarc.pnone.checks.test', 'none')",
            db.database,
            now() - days_ago * 86_400
        ));
    }

    let (code, stderr) = dns_check(&db, &domains_file);
    assert_eq!(code, Some(0), "{stderr}");
    assert!(
        stderr.contains(&format!("{} domains checked", EXPECTED.len() + 1)),
        "the inventory and the domain seen in reports: {stderr}"
    );

    let findings = latest(&db, "arrayStringConcat(findings.code, ' ')");
    let status = db.rows(&format!(
        "SELECT domain, status, arrayStringConcat(reasons, ' | '), owner FROM {}.domain_status ORDER BY domain",
        db.database
    ));
    assert_eq!(status.len(), EXPECTED.len(), "one row per inventory domain");
    let status: BTreeMap<&str, &Vec<String>> = status.iter().map(|r| (r[0].as_str(), r)).collect();
    for (domain, _, codes, colour) in EXPECTED {
        let found = findings
            .get(*domain)
            .unwrap_or_else(|| panic!("no snapshot of {domain}"));
        for code in *codes {
            assert!(
                found[0].split(' ').any(|c| c == *code),
                "{domain}: {code} missing from {:?}",
                found[0]
            );
        }
        let judged = status[domain];
        assert_eq!(judged[1], *colour, "{domain}: {}", judged[2]);
        assert_eq!(judged[3], format!("Owner of {domain}"));
    }
    assert!(
        findings["good.checks.test"][0].is_empty(),
        "the good domain has no findings: {:?}",
        findings["good.checks.test"]
    );

    // The parsed fields of the snapshots.
    let fields = latest(
        &db,
        "dmarc_p, dmarc_name, dmarc_inherited, spf_lookups, spf_void_lookups, spf_all, null_mx, \
         arrayStringConcat(arrayMap(b -> toString(b), dkim_key_bits), ','), \
         arrayStringConcat(dkim_selectors, ','), mta_sts_record != '', failed_lookups > 0, \
         dmarc_rua_reaches_team, in_inventory, dmarc_status, spf_status, dkim_status, mx_status",
    );
    let row = |domain: &str| fields[domain].join(" ");
    assert_eq!(
        row("good.checks.test"),
        "reject _dmarc.good.checks.test 0 1 0 -all 0 2048 s2048 1 0 1 1 ok ok ok ok"
    );
    assert_eq!(
        row("inherited.checks.test"),
        "reject _dmarc.checks.test 1 0 0 -all 0   0 0 1 1 info ok none info"
    );
    assert_eq!(fields["spf11.checks.test"][3], "11");
    assert_eq!(&fields["voidloop.checks.test"][3..5], ["6", "3"]);
    assert_eq!(fields["plusall.checks.test"][5], "+all");
    assert_eq!(fields["parked-right.checks.test"][6], "1");
    assert_eq!(fields["dkim.checks.test"][7], "0,512");
    assert_eq!(fields["dkim.checks.test"][8], "gone,s512");
    assert_eq!(fields["dkim.checks.test"][15], "error");
    assert_eq!(fields["noteam.checks.test"][11], "0");
    assert_eq!(fields["servfail.test"][10], "1");
    assert_eq!(fields["silent.test"][10], "1");
    assert_eq!(fields["seen-only.checks.test"][12], "0");

    // The reasons say why, in words.
    assert!(status["pnone.checks.test"][2].contains("p=none for 120 days"));
    assert!(status["parked-wrong.checks.test"][2]
        .contains("parked domain without p=reject, v=spf1 -all, a null MX"));
    assert!(status["spf11.checks.test"][2].contains("11 DNS lookups (limit 10)"));
    assert!(status["inherited.checks.test"][2].contains("p=quarantine"));

    // A second run is a new snapshot (history kept); the status stays one row each.
    let (code, stderr) = dns_check(&db, &domains_file);
    assert_eq!(code, Some(0), "{stderr}");
    assert_eq!(
        db.number(&format!(
            "SELECT count() FROM {}.dns_checks WHERE domain = 'good.checks.test'",
            db.database
        )),
        2
    );
    assert_eq!(
        db.number(&format!(
            "SELECT count() FROM {}.domain_status",
            db.database
        )),
        EXPECTED.len() as u64
    );
}

#[test]
fn a_bad_dns_configuration_is_a_usage_error() {
    let db = TestDb::fresh("dns_check_config");
    let out = db
        .command(&["dns", "check"])
        .env("DMARC_INGEST_DNS_NAMESERVERS", "resolver.example")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("resolver.example"));
}

#[test]
fn changes_for_the_worse_open_one_alert_each_until_they_are_mended() {
    let db = TestDb::fresh("alerts_check");
    let dir = tempfile::tempdir().unwrap();
    let domains_file = dir.path().join("domains.csv");
    std::fs::write(
        &domains_file,
        "domain,owner,group,parked,contact\n\
         pnone.checks.test,A,G,no,\nspf11.checks.test,A,G,no,\n\
         plusall.checks.test,A,G,no,\ngood.checks.test,A,G,no,\n\
         nodmarc.test,A,G,no,\nsyntax.checks.test,A,G,no,\n",
    )
    .unwrap();
    assert!(db
        .command(&["domains", "sync"])
        .env("DMARC_INGEST_DOMAINS_FILE", &domains_file)
        .output()
        .unwrap()
        .status
        .success());
    // Ten days ago pnone published p=reject, nodmarc had a record, and plusall was green;
    // syntax was never fine (broken from its first check: no alert, the status says it).
    let then = now() - 10 * 86_400;
    for domain in ["pnone.checks.test", "nodmarc.test"] {
        db.sql(&format!(
            "INSERT INTO {}.dns_checks (checked_at, domain, in_inventory, dmarc_name, dmarc_p, dmarc_status) \
             VALUES ({then}, '{domain}', 1, '_dmarc.{domain}', 'reject', 'ok')",
            db.database
        ));
    }
    db.sql(&format!(
        "INSERT INTO {}.domain_status_history (computed_at, domain, status) \
         VALUES ({then}, 'plusall.checks.test', 'green')",
        db.database
    ));
    let (code, stderr) = dns_check(&db, &domains_file);
    assert_eq!(code, Some(0), "{stderr}");
    let alerts_check = || {
        let out = db.cli(&["alerts", "check"]);
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        assert_eq!(out.status.code(), Some(0), "{stderr}");
        stderr
    };
    let open = || {
        db.rows(
            "SELECT rule, domain, summary FROM {database}.alerts WHERE state = 'open' ORDER BY rule",
        )
    };
    let stderr = alerts_check();
    assert!(
        stderr.contains("4 alerts opened, 0 still open, 0 resolved"),
        "{stderr}"
    );
    let alerts = open();
    let names: Vec<(&str, &str)> = alerts
        .iter()
        .map(|r| (r[0].as_str(), r[1].as_str()))
        .collect();
    assert_eq!(
        names,
        [
            ("dmarc_broken", "nodmarc.test"),
            ("dmarc_downgraded", "pnone.checks.test"),
            ("spf_over_limit", "spf11.checks.test"),
            ("status_red", "plusall.checks.test"),
        ]
    );
    assert!(
        alerts[0][2].contains("DMARC record broken or gone"),
        "{:?}",
        alerts[0]
    );
    assert!(
        alerts[1][2].contains("p=reject became p=none"),
        "{:?}",
        alerts[1]
    );

    // Evaluated again: still one open alert each, not a second one.
    let stderr = alerts_check();
    assert!(
        stderr.contains("0 alerts opened, 4 still open, 0 resolved"),
        "{stderr}"
    );
    assert_eq!(open().len(), 4);
    assert_eq!(
        db.number("SELECT count() FROM {database}.alerts"),
        4,
        "one alert per rule, domain and key"
    );

    // spf11 mended: its alert is resolved, the others stay open.
    db.sql(&format!(
        "INSERT INTO {}.dns_checks (checked_at, domain, in_inventory, dmarc_name, dmarc_p, dmarc_status, spf_lookups) \
         VALUES ({}, 'spf11.checks.test', 1, '_dmarc.spf11.checks.test', 'reject', 'ok', 3)",
        db.database,
        now() + 5
    ));
    let stderr = alerts_check();
    assert!(
        stderr.contains("0 alerts opened, 3 still open, 1 resolved"),
        "{stderr}"
    );
    assert_eq!(
        db.rows("SELECT state FROM {database}.alerts WHERE rule = 'spf_over_limit'"),
        [["resolved"]]
    );
}
