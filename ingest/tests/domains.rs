//! `dmarc-ingest domains sync` against the real ClickHouse: the domains file into
//! `dmarc.domains` (idempotent; removed domains marked, not lost), and the domains of
//! stored reports that are not in it listed.

mod common;

use common::clickhouse::TestDb;

fn report(domain: &str, id: &str) -> String {
    format!(
        "<?xml version=\"1.0\"?><feedback><report_metadata><org_name>receiver.example</org_name>\
         <email>r@receiver.example</email><report_id>{id}</report_id><date_range>\
         <begin>1717200000</begin><end>1717286399</end></date_range></report_metadata>\
         <policy_published><domain>{domain}</domain><p>none</p></policy_published><record><row>\
         <source_ip>192.0.2.1</source_ip><count>2</count><policy_evaluated><disposition>none\
         </disposition><dkim>pass</dkim><spf>pass</spf></policy_evaluated></row><identifiers>\
         <header_from>{domain}</header_from></identifiers><auth_results><spf><domain>{domain}\
         </domain><result>pass</result></spf></auth_results></record></feedback>"
    )
}

#[test]
fn the_domains_file_is_synced_idempotently_and_unregistered_domains_are_listed() {
    let db = TestDb::fresh("domains_sync");
    let dir = tempfile::tempdir().unwrap();
    for (domain, id) in [("council-a.example", "d-1"), ("unknown.example", "d-2")] {
        std::fs::write(dir.path().join(format!("{id}.xml")), report(domain, id)).unwrap();
    }
    let reports = dir.path().display().to_string();
    assert!(db.cli(&["import", &reports]).status.success());

    let file = dir.path().join("domains.csv");
    let sync = || {
        let out = db
            .command(&["domains", "sync"])
            .env("DMARC_INGEST_DOMAINS_FILE", &file)
            .output()
            .unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    std::fs::write(
        &file,
        "domain,owner,group,parked,contact\n\
         council-a.example,Council A,\"Councils, north\",no,dmarc@council-a.example\n\
         parked.example,Council A,\"Councils, north\",yes,\n",
    )
    .unwrap();
    let (code, stderr) = sync();
    assert_eq!(code, Some(0), "{stderr}");
    assert!(stderr.contains("2 domains in"), "{stderr}");
    assert!(
        stderr.contains("2 new or changed, 0 marked removed"),
        "{stderr}"
    );
    assert!(
        stderr.contains("1 domains of stored reports are not in the inventory")
            && stderr.contains("unknown.example (1 reports)"),
        "{stderr}"
    );
    assert_eq!(
        db.rows("SELECT domain, owner, group_name, toString(parked), contact, toString(removed) FROM {database}.domains ORDER BY domain"),
        vec![
            vec!["council-a.example", "Council A", "Councils, north", "0", "dmarc@council-a.example", "0"],
            vec!["parked.example", "Council A", "Councils, north", "1", "", "0"],
        ]
        .into_iter()
        .map(|r| r.into_iter().map(String::from).collect::<Vec<_>>())
        .collect::<Vec<_>>()
    );

    // Again: nothing written.
    let (code, stderr) = sync();
    assert_eq!(code, Some(0), "{stderr}");
    assert!(
        stderr.contains("0 new or changed, 0 marked removed"),
        "{stderr}"
    );
    assert_eq!(
        db.number("SELECT count() FROM {database}.domain_inventory"),
        2
    );

    // A domain gone from the file is marked removed, not lost; a changed one updated.
    std::thread::sleep(std::time::Duration::from_secs(1));
    std::fs::write(
        &file,
        "domain,owner,group,parked,contact\ncouncil-a.example,Council A (IT),Councils,no,\n",
    )
    .unwrap();
    let (code, stderr) = sync();
    assert_eq!(code, Some(0), "{stderr}");
    assert!(
        stderr.contains("1 new or changed, 1 marked removed"),
        "{stderr}"
    );
    assert_eq!(
        db.rows("SELECT domain, owner, toString(removed) FROM {database}.domains ORDER BY domain"),
        vec![
            vec![
                "council-a.example".to_string(),
                "Council A (IT)".into(),
                "0".into()
            ],
            vec!["parked.example".to_string(), "Council A".into(), "1".into()],
        ]
    );
    assert_eq!(
        db.rows("SELECT domain, toString(reports) FROM {database}.unregistered_domains"),
        vec![vec!["unknown.example".to_string(), "1".into()]]
    );

    // A bad file or none: a configuration error, nothing written.
    std::fs::write(
        &file,
        "domain,owner,group,parked,contact\nx.example,o,g,perhaps,\n",
    )
    .unwrap();
    let (code, stderr) = sync();
    assert_eq!(code, Some(2), "{stderr}");
    assert!(
        stderr.contains("line 2") && stderr.contains("perhaps"),
        "{stderr}"
    );
    let out = db.cli(&["domains", "sync"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("[domains] file"));
    assert_eq!(
        db.number("SELECT count() FROM {database}.domain_inventory"),
        4
    );
}
