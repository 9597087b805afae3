//! Every shipped query runs: each Grafana dashboard panel and template variable
//! (deploy/grafana/dashboards/*.json) and each ```sql block of docs/queries.md, on the
//! real ClickHouse 18.16 (started by `deploy/dev/clickhouse.sh`), over the sample reports,
//! the shared corpus and a few reports dated yesterday, so that every query has rows to
//! read. The dashboards and the Grafana provisioning files are also checked for shape.
//!
//! The Grafana macros are expanded as the grafana-clickhouse-datasource plugin expands
//! them, for a fixed range (the same rules as deploy/dev/extract_dashboard_sql.py, which
//! feeds the same queries to the current engine):
//!
//! - `$__timeFilter(col)` -> `col >= toDateTime(FROM) AND col <= toDateTime(TO)`
//! - `$__dateFilter(col)` -> `col >= toDate('FROM') AND col <= toDate('TO')` (for `Date`
//!   columns: 18.16 compares a `Date` with a `DateTime` wrongly and returns no rows)
//! - `$__fromTime`, `$__toTime` -> `toDateTime(FROM)`, `toDateTime(TO)`
//! - `${domain:singlequote}`, `${domain}`, `$domain` -> every value of the dashboard's
//!   `domain` variable, as its query returns them, quoted: what "All" sends.
//!
//! Any other `$` in a query fails the test: a new macro is added here on purpose.

mod common;

use std::collections::{BTreeSet, HashSet};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{SystemTime, UNIX_EPOCH};

use serde_json::Value;

use common::clickhouse::TestDb;

const FROM_TS: u64 = 1_500_000_000; // 2017-07-14T02:40:00Z
const TO_TS: u64 = 1_900_000_000; // 2030-03-17T17:46:40Z
const FROM_DATE: &str = "2017-07-14";
const TO_DATE: &str = "2030-03-17";
const DATASOURCE_TYPE: &str = "grafana-clickhouse-datasource";
const DATASOURCE_UID: &str = "dmarc-clickhouse";

/// One query as shipped: where it comes from, its SQL, what the panel expects of it.
struct Shipped {
    origin: String,
    sql: String,
    /// The target's `format`: 0 time series, 1 table; `None` outside panels.
    format: Option<u64>,
    /// Result columns the panel refers to by name (field overrides, bar chart x field).
    columns: Vec<String>,
}

fn dashboards_dir() -> PathBuf {
    common::repo_root().join("deploy/grafana/dashboards")
}

fn dashboards() -> Vec<(PathBuf, Value)> {
    let mut paths: Vec<PathBuf> = std::fs::read_dir(dashboards_dir())
        .expect("deploy/grafana/dashboards")
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "json"))
        .collect();
    paths.sort();
    paths
        .into_iter()
        .map(|p| {
            let text = std::fs::read_to_string(&p).unwrap();
            let json = serde_json::from_str(&text)
                .unwrap_or_else(|e| panic!("{}: not JSON: {e}", p.display()));
            (p, json)
        })
        .collect()
}

fn name(path: &Path) -> String {
    path.file_name().unwrap().to_string_lossy().into_owned()
}

/// Panels, rows' nested panels included.
fn panels(dash: &Value) -> Vec<&Value> {
    let mut out = Vec::new();
    for p in dash["panels"].as_array().map(Vec::as_slice).unwrap_or(&[]) {
        if p["type"] == "row" {
            out.extend(p["panels"].as_array().into_iter().flatten());
        }
        out.push(p);
    }
    out.retain(|p| p["type"] != "row");
    out
}

/// The query of the `domain` template variable.
fn domain_variable_query(dash: &Value) -> Option<String> {
    let var = dash["templating"]["list"]
        .as_array()?
        .iter()
        .find(|v| v["name"] == "domain")?;
    match &var["query"] {
        Value::String(s) => Some(s.clone()),
        q => q["rawSql"].as_str().map(str::to_owned),
    }
}

/// Every panel target of `dash`.
fn panel_queries(path: &Path, dash: &Value) -> Vec<Shipped> {
    let mut out = Vec::new();
    for p in panels(dash) {
        let mut columns: Vec<String> = p["fieldConfig"]["overrides"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|o| o["matcher"]["id"] == "byName")
            .filter_map(|o| o["matcher"]["options"].as_str().map(str::to_owned))
            .collect();
        if let Some(x) = p["options"]["xField"].as_str() {
            columns.push(x.to_owned());
        }
        for t in p["targets"].as_array().into_iter().flatten() {
            out.push(Shipped {
                origin: format!(
                    "{}: panel {} \"{}\" ({})",
                    name(path),
                    p["id"],
                    p["title"].as_str().unwrap_or(""),
                    t["refId"].as_str().unwrap_or("")
                ),
                sql: t["rawSql"].as_str().unwrap_or("").to_owned(),
                format: t["format"].as_u64(),
                columns: columns.clone(),
            });
        }
    }
    out
}

/// The ```sql blocks of docs/queries.md, one statement each.
fn doc_queries() -> Vec<Shipped> {
    let path = common::repo_root().join("docs/queries.md");
    let text = std::fs::read_to_string(&path).expect("docs/queries.md");
    let mut out = Vec::new();
    let mut block: Option<(usize, String)> = None;
    for (i, line) in text.lines().enumerate() {
        let fence = line.trim_start();
        match &mut block {
            None if fence.starts_with("```sql") => block = Some((i + 2, String::new())),
            Some((start, sql)) if fence.starts_with("```") => {
                out.push(Shipped {
                    origin: format!("docs/queries.md:{start}"),
                    sql: std::mem::take(sql),
                    format: None,
                    columns: Vec::new(),
                });
                block = None;
            }
            Some((_, sql)) => {
                sql.push_str(line);
                sql.push('\n');
            }
            None => {}
        }
    }
    assert!(block.is_none(), "docs/queries.md: unclosed ```sql block");
    out
}

/// `'a','b'`: Grafana's `singlequote` format.
fn quote_all(values: &[String]) -> String {
    values
        .iter()
        .map(|v| format!("'{}'", v.replace('\\', "\\\\").replace('\'', "\\'")))
        .collect::<Vec<_>>()
        .join(",")
}

/// Replaces `macro(arg)` with `expand(arg)` everywhere.
fn expand_call(sql: &str, macro_name: &str, expand: impl Fn(&str) -> String) -> String {
    let open = format!("{macro_name}(");
    let mut out = String::new();
    let mut rest = sql;
    while let Some(at) = rest.find(&open) {
        out.push_str(&rest[..at]);
        let after = &rest[at + open.len()..];
        let close = after.find(')').unwrap_or(after.len());
        out.push_str(&expand(after[..close].trim()));
        rest = after.get(close + 1..).unwrap_or("");
    }
    out.push_str(rest);
    out
}

/// Expands the Grafana macros and the `domain` variable; an unknown `$...` is an error.
fn expand(sql: &str, domains: &[String]) -> Result<String, String> {
    let quoted = quote_all(domains);
    let mut s = expand_call(sql, "$__timeFilter", |c| {
        format!("{c} >= toDateTime({FROM_TS}) AND {c} <= toDateTime({TO_TS})")
    });
    s = expand_call(&s, "$__dateFilter", |c| {
        format!("{c} >= toDate('{FROM_DATE}') AND {c} <= toDate('{TO_DATE}')")
    });
    s = s
        .replace("$__fromTime", &format!("toDateTime({FROM_TS})"))
        .replace("$__toTime", &format!("toDateTime({TO_TS})"))
        .replace("${domain:singlequote}", &quoted)
        .replace("${domain}", &quoted);
    // `$domain` only as a whole word.
    let mut out = String::new();
    let mut rest = s.as_str();
    while let Some(at) = rest.find("$domain") {
        let after = &rest[at + "$domain".len()..];
        let whole = !after.starts_with(|c: char| c.is_ascii_alphanumeric() || c == '_');
        out.push_str(&rest[..at]);
        out.push_str(if whole { &quoted } else { "$domain" });
        rest = after;
    }
    out.push_str(rest);
    match out.find('$') {
        Some(at) => Err(format!(
            "unknown macro or variable at {:?}",
            &out[at..(at + 24).min(out.len())]
        )),
        None => Ok(out),
    }
}

/// `dmarc.table` -> `database.table` (only where `dmarc` is a whole word).
fn qualify(sql: &str, database: &str) -> String {
    let mut out = String::new();
    let mut rest = sql;
    while let Some(at) = rest.find("dmarc.") {
        let whole = !out
            .chars()
            .chain(rest[..at].chars())
            .last()
            .is_some_and(|c| c.is_ascii_alphanumeric() || c == '_' || c == '.');
        out.push_str(&rest[..at]);
        out.push_str(if whole { database } else { "dmarc" });
        out.push('.');
        rest = &rest[at + "dmarc.".len()..];
    }
    out.push_str(rest);
    out
}

/// Whether `word` occurs in `text` as an identifier of its own (`param_` as a prefix).
fn has_word(text: &str, word: &str) -> bool {
    let ident = |c: char| c.is_ascii_alphanumeric() || c == '_';
    text.match_indices(word).any(|(at, _)| {
        let before = text[..at].chars().next_back();
        let after = text[at + word.len()..].chars().next();
        !before.is_some_and(ident) && (word.ends_with('_') || !after.is_some_and(ident))
    })
}

/// House rules the engines do not enforce (18.16 takes `GROUP BY 1` as a constant).
fn lint(sql: &str) -> Vec<String> {
    let mut problems = Vec::new();
    let words: Vec<&str> = sql.split_whitespace().collect();
    for (i, w) in words.iter().enumerate() {
        let table_follows = w.eq_ignore_ascii_case("from")
            || (w.eq_ignore_ascii_case("join")
                && !(i > 0 && words[i - 1].eq_ignore_ascii_case("array")));
        if table_follows {
            let next = words.get(i + 1).copied().unwrap_or("");
            if !(next.starts_with("dmarc.") || next.starts_with('(')) {
                problems.push(format!("table not qualified with `dmarc.`: {w} {next}"));
            }
        }
    }
    let flat = words.join(" ").to_ascii_lowercase();
    for clause in ["group by ", "order by "] {
        for (at, _) in flat.match_indices(clause) {
            let list = &flat[at + clause.len()..];
            let end = [
                " having ",
                " order by ",
                " limit ",
                " settings ",
                " format ",
                ")",
            ]
            .iter()
            .filter_map(|t| list.find(t))
            .min()
            .unwrap_or(list.len());
            for item in list[..end].split(',') {
                let item = item.trim();
                let item = item
                    .strip_suffix(" desc")
                    .or_else(|| item.strip_suffix(" asc"))
                    .unwrap_or(item);
                if !item.is_empty() && item.bytes().all(|b| b.is_ascii_digit()) {
                    problems.push(format!("positional {}{item}", clause.to_uppercase()));
                }
            }
        }
    }
    for word in ["over", "qualify", "filter", "map", "final", "param_"] {
        if has_word(&flat, word) {
            problems.push(format!("`{word}`: window functions, QUALIFY, FILTER, Map, FINAL and param_ are not for 18.16"));
        }
    }
    // The rollups are SummingMergeTree: rows of one key may not be merged yet, so their
    // counters are read only through sum()/sumIf().
    if flat.contains("dmarc.records_daily") || flat.contains("dmarc.reporter_daily") {
        for counter in ["messages", "records", "reports"] {
            for (at, _) in sql.match_indices(counter) {
                let before = sql[..at].chars().next_back();
                let after = sql[at + counter.len()..].chars().next();
                let ident =
                    |c: Option<char>| c.is_some_and(|c| c.is_ascii_alphanumeric() || c == '_');
                if ident(before) || ident(after) || before == Some('.') {
                    continue;
                }
                let head = sql[..at].trim_end();
                if !(head.ends_with("sum(") || head.ends_with("sumIf(")) {
                    problems.push(format!(
                        "rollup counter `{counter}` read outside sum()/sumIf()"
                    ));
                }
            }
        }
    }
    problems
}

/// Runs `sql` over HTTP with `FORMAT JSON`: the parsed answer, or the server's error.
fn run(db: &TestDb, sql: &str) -> Result<Value, String> {
    let body = format!("{}\nFORMAT JSON", sql.trim().trim_end_matches(';'));
    let out = Command::new("curl")
        .args(["-sS", "--fail-with-body", "--data-binary", &body])
        .arg(format!("{}/", db.url))
        .output()
        .map_err(|e| format!("curl: {e}"))?;
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    if !out.status.success() {
        return Err(format!("{}{}", text, String::from_utf8_lossy(&out.stderr)));
    }
    serde_json::from_str(&text).map_err(|e| format!("answer is not JSON ({e}): {text}"))
}

/// Checks an answer against what its panel expects; `Err` says what is wrong.
fn check_answer(q: &Shipped, answer: &Value) -> Result<(), String> {
    let meta = answer["meta"].as_array().cloned().unwrap_or_default();
    let names: Vec<&str> = meta.iter().filter_map(|m| m["name"].as_str()).collect();
    if names.is_empty() {
        return Err("no columns".into());
    }
    let unique: HashSet<&str> = names.iter().copied().collect();
    if unique.len() != names.len() {
        return Err(format!("duplicate column names: {names:?}"));
    }
    for wanted in &q.columns {
        if !unique.contains(wanted.as_str()) {
            return Err(format!(
                "the panel refers to column `{wanted}`, the query returns {names:?}"
            ));
        }
    }
    if q.format == Some(0) {
        let time_type = meta
            .iter()
            .find(|m| m["name"] == "time")
            .and_then(|m| m["type"].as_str())
            .unwrap_or("");
        if !(time_type == "Date" || time_type.starts_with("DateTime")) {
            return Err(format!(
                "a time series needs a Date/DateTime column `time`, got {meta:?}"
            ));
        }
    }
    if answer["rows"].as_u64().unwrap_or(0) == 0 {
        return Err("no rows (the test data should give every query some)".into());
    }
    // An aggregate over no rows still answers one row of zeros: a filter that matches
    // nothing (a `Date` compared with a `DateTime` on 18.16) shows up here.
    let blank = |v: &Value| match v {
        Value::Null => true,
        Value::Number(n) => n.as_f64() == Some(0.0),
        Value::String(s) => s.is_empty() || s.parse::<f64>() == Ok(0.0),
        Value::Array(a) => a.is_empty(),
        _ => false,
    };
    let rows = answer["data"].as_array().cloned().unwrap_or_default();
    if rows
        .iter()
        .all(|r| r.as_object().is_some_and(|o| o.values().all(blank)))
    {
        return Err(format!("only zeros and empty values: {rows:?}"));
    }
    Ok(())
}

/// A report for `example.com` covering one day `days_ago` days back, from `org`, with
/// records that give every documented query rows: an aligned sender, a third party
/// signing with its own domain and failing SPF on ours, forwarded mail, unsigned IPv6
/// mail, and a record whose reporter passes DMARC without any aligned result.
fn recent_report(org: &str, id: &str, days_ago: u64) -> String {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let begin = now - now % 86_400 - days_ago * 86_400;
    let record = |ip: &str,
                  count: u32,
                  disposition: &str,
                  verdicts: (&str, &str),
                  reason: &str,
                  header_from: &str,
                  envelope_from: &str,
                  auth: &str| {
        let reason = if reason.is_empty() {
            String::new()
        } else {
            format!("<reason><type>{reason}</type><comment></comment></reason>")
        };
        format!(
            "<record><row><source_ip>{ip}</source_ip><count>{count}</count><policy_evaluated>\
             <disposition>{disposition}</disposition><dkim>{}</dkim><spf>{}</spf>{reason}\
             </policy_evaluated></row><identifiers><envelope_from>{envelope_from}</envelope_from>\
             <header_from>{header_from}</header_from></identifiers><auth_results>{auth}</auth_results></record>",
            verdicts.0, verdicts.1
        )
    };
    let dkim = |d: &str, r: &str| {
        format!("<dkim><domain>{d}</domain><selector>s1</selector><result>{r}</result></dkim>")
    };
    let spf = |d: &str, r: &str| {
        format!("<spf><domain>{d}</domain><scope>mfrom</scope><result>{r}</result></spf>")
    };
    let records = [
        record(
            "192.0.2.1",
            10,
            "none",
            ("pass", "pass"),
            "",
            "example.com",
            "example.com",
            &(dkim("example.com", "pass") + &spf("example.com", "pass")),
        ),
        record(
            "192.0.2.2",
            4,
            "none",
            ("fail", "fail"),
            "local_policy",
            "news.example.com",
            "example.com",
            &(dkim("esp.example", "pass") + &spf("example.com", "fail")),
        ),
        record(
            "198.51.100.7",
            3,
            "none",
            ("pass", "fail"),
            "forwarded",
            "example.com",
            "lists.example.net",
            &(dkim("example.com", "pass") + &spf("lists.example.net", "pass")),
        ),
        record(
            "2001:db8::1",
            2,
            "quarantine",
            ("fail", "fail"),
            "",
            "example.com",
            "example.com",
            &spf("example.com", "softfail"),
        ),
        record(
            "203.0.113.9",
            1,
            "none",
            ("pass", "fail"),
            "",
            "example.com",
            "other.example",
            &(dkim("other.example", "pass") + &spf("other.example", "pass")),
        ),
    ];
    format!(
        "<?xml version=\"1.0\"?><feedback><report_metadata><org_name>{org}</org_name>\
         <email>dmarc@{org}</email><report_id>{id}</report_id><date_range><begin>{begin}</begin>\
         <end>{}</end></date_range></report_metadata><policy_published><domain>example.com</domain>\
         <adkim>r</adkim><aspf>r</aspf><p>none</p><sp>none</sp><pct>100</pct></policy_published>{}</feedback>",
        begin + 86_399,
        records.concat()
    )
}

#[test]
fn dashboards_and_provisioning_are_well_formed() {
    let dashboards = dashboards();
    let expected: BTreeSet<&str> = [
        "failures.json",
        "overview.json",
        "policy-readiness.json",
        "reporters.json",
        "sources.json",
    ]
    .into();
    let found: BTreeSet<String> = dashboards.iter().map(|(p, _)| name(p)).collect();
    assert!(
        expected.iter().all(|e| found.contains(*e)),
        "dashboards: {found:?}"
    );

    let mut problems = Vec::new();
    let mut uids = HashSet::new();
    for (path, dash) in &dashboards {
        let file = name(path);
        let mut bad = |what: String| problems.push(format!("{file}: {what}"));
        let uid = dash["uid"].as_str().unwrap_or("");
        if uid.is_empty() || !uids.insert(uid.to_owned()) {
            bad(format!("uid {uid:?} missing or used twice"));
        }
        if dash["title"].as_str().unwrap_or("").is_empty() {
            bad("no title".into());
        }
        if dash["schemaVersion"].as_u64() != Some(39) {
            bad(format!("schemaVersion {}", dash["schemaVersion"]));
        }
        match dash["tags"].as_array() {
            Some(tags) if !tags.is_empty() => {}
            _ => bad("no tags".into()),
        }
        if !dash["time"]["from"].is_string() || !dash["time"]["to"].is_string() {
            bad("no time range".into());
        }
        let var = dash["templating"]["list"]
            .as_array()
            .and_then(|l| l.iter().find(|v| v["name"] == "domain"));
        match var {
            None => bad("no `domain` template variable".into()),
            Some(v) => {
                if v["type"] != "query"
                    || v["multi"] != true
                    || v["includeAll"] != true
                    || v["datasource"]["uid"] != DATASOURCE_UID
                    || domain_variable_query(dash).is_none()
                {
                    bad(format!("`domain` variable: {v}"));
                }
            }
        }
        let mut ids = HashSet::new();
        let mut boxes: Vec<(u64, u64, u64, u64, String)> = Vec::new();
        let all = panels(dash);
        if all.is_empty() {
            bad("no panels".into());
        }
        for p in all {
            let title = p["title"].as_str().unwrap_or("");
            let mut bad = |what: String| problems.push(format!("{file}: panel {title:?}: {what}"));
            match p["id"].as_u64() {
                Some(id) if ids.insert(id) => {}
                id => bad(format!("id {id:?} missing or used twice")),
            }
            if title.is_empty() || p["type"].as_str().unwrap_or("").is_empty() {
                bad("no title or type".into());
            }
            if p["datasource"]["type"] != DATASOURCE_TYPE
                || p["datasource"]["uid"] != DATASOURCE_UID
            {
                bad(format!("datasource {}", p["datasource"]));
            }
            let g = &p["gridPos"];
            match (
                g["x"].as_u64(),
                g["y"].as_u64(),
                g["w"].as_u64(),
                g["h"].as_u64(),
            ) {
                (Some(x), Some(y), Some(w), Some(h)) if w > 0 && h > 0 && x + w <= 24 => {
                    for (ox, oy, ow, oh, other) in &boxes {
                        if x < ox + ow && *ox < x + w && y < oy + oh && *oy < y + h {
                            bad(format!("overlaps panel {other:?}"));
                        }
                    }
                    boxes.push((x, y, w, h, title.to_owned()));
                }
                _ => bad(format!("gridPos {g}")),
            }
            let targets = p["targets"].as_array().cloned().unwrap_or_default();
            if targets.is_empty() {
                bad("no targets".into());
            }
            let mut refs = HashSet::new();
            for t in &targets {
                let sql = t["rawSql"].as_str().unwrap_or("");
                if sql.trim().is_empty() {
                    bad("target without rawSql".into());
                }
                if !refs.insert(t["refId"].as_str().unwrap_or("").to_owned()) {
                    bad("refId used twice".into());
                }
                if t["datasource"] != p["datasource"] || t["editorType"] != "sql" {
                    bad(format!("target datasource/editorType: {t}"));
                }
                // The plugin (v4) reads `format` as a number: 0 time series, 1 table.
                match (t["format"].as_u64(), t["queryType"].as_str()) {
                    (Some(0), Some("timeSeries")) => {
                        if !sql.contains("ORDER BY time") {
                            bad("a time series must be ordered by time".into());
                        }
                    }
                    (Some(1), Some("table")) => {}
                    other => bad(format!("format/queryType {other:?}")),
                }
            }
        }
    }

    // Every query uses only the macros this test expands, and the house rules.
    for (path, dash) in &dashboards {
        let mut all = panel_queries(path, dash);
        if let Some(sql) = domain_variable_query(dash) {
            all.push(Shipped {
                origin: format!("{}: variable $domain", name(path)),
                sql,
                format: None,
                columns: Vec::new(),
            });
        }
        for q in all {
            if let Err(e) = expand(&q.sql, &["example.com".into()]) {
                problems.push(format!("{}: {e}", q.origin));
            }
            for l in lint(&q.sql) {
                problems.push(format!("{}: {l}", q.origin));
            }
        }
    }
    let docs = doc_queries();
    if !(10..=20).contains(&docs.len()) {
        problems.push(format!("docs/queries.md has {} sql blocks", docs.len()));
    }
    for q in &docs {
        if q.sql.trim().trim_end_matches(';').contains(';') || q.sql.contains('$') {
            problems.push(format!(
                "{}: one statement per block, no placeholders",
                q.origin
            ));
        }
        for l in lint(&q.sql) {
            problems.push(format!("{}: {l}", q.origin));
        }
    }

    // Provisioning (YAML: checked line by line, no YAML parser among the dependencies).
    let provisioning = common::repo_root().join("deploy/grafana/provisioning");
    for (file, wanted) in [
        (
            "datasources/clickhouse.yaml",
            &[
                "apiVersion: 1",
                "type: grafana-clickhouse-datasource",
                "uid: dmarc-clickhouse",
                "protocol: http",
                "defaultDatabase: dmarc",
                "password: $CLICKHOUSE_PASSWORD",
            ][..],
        ),
        (
            "dashboards/dmarc.yaml",
            &[
                "apiVersion: 1",
                "type: file",
                "path: /var/lib/grafana/dashboards",
            ][..],
        ),
    ] {
        let text = std::fs::read_to_string(provisioning.join(file))
            .unwrap_or_else(|e| panic!("provisioning/{file}: {e}"));
        if text.contains('\t') {
            problems.push(format!(
                "provisioning/{file}: a tab (YAML indents with spaces)"
            ));
        }
        let lines: Vec<&str> = text
            .lines()
            .map(|l| l.split(" #").next().unwrap_or("").trim())
            .map(|l| l.strip_prefix("- ").unwrap_or(l))
            .collect();
        for w in wanted {
            if !lines.contains(w) {
                problems.push(format!("provisioning/{file}: no line `{w}`"));
            }
        }
    }

    assert!(problems.is_empty(), "\n{}", problems.join("\n"));
}

#[test]
fn every_shipped_query_runs_on_clickhouse() {
    let db = TestDb::fresh("queries");
    let recent = tempfile::tempdir().unwrap();
    for (file, org, id, days_ago) in [
        ("recent.xml", "Recent Reporter", "queries-recent-1", 1),
        ("silent.xml", "Silent Reporter", "queries-silent-1", 10),
    ] {
        std::fs::write(recent.path().join(file), recent_report(org, id, days_ago)).unwrap();
    }
    let paths = [
        common::repo_root().join("sample-reports"),
        common::corpus(),
        recent.path().to_owned(),
    ];
    let mut args = vec!["import".to_owned()];
    args.extend(paths.iter().map(|p| p.display().to_string()));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let out = db.cli(&args);
    // 1: the broken fixtures are refused (and land in `failures`), the others stored.
    assert!(
        matches!(out.status.code(), Some(0 | 1)),
        "import: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(db.number("SELECT count() FROM {database}.reports") > 0);
    assert!(db.number("SELECT count() FROM {database}.failures") > 0);
    assert_eq!(
        db.number("SELECT count() FROM {database}.reports WHERE report_id LIKE 'queries-%'"),
        2,
        "the recent reports were not imported: {}",
        String::from_utf8_lossy(&out.stderr)
    );

    let mut failures = Vec::new();
    let mut ran = 0;
    let mut report = |q: &Shipped, sql: &str, error: String| {
        let mut m = String::new();
        let _ = write!(m, "--- {}\n{sql}\n--- {error}\n", q.origin);
        failures.push(m);
    };

    for (path, dash) in dashboards() {
        // The variable first: its values are what "All" puts into the panels' queries.
        let var_sql = domain_variable_query(&dash).expect("domain variable");
        let var = Shipped {
            origin: format!("{}: variable $domain", name(&path)),
            sql: var_sql.clone(),
            format: None,
            columns: Vec::new(),
        };
        let var_sql = qualify(&var_sql, &db.database);
        let domains: Vec<String> = match run(&db, &var_sql) {
            Ok(answer) => answer["data"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|row| row["policy_domain"].as_str().map(str::to_owned))
                .collect(),
            Err(e) => {
                report(&var, &var_sql, e);
                continue;
            }
        };
        ran += 1;
        if !domains.iter().any(|d| d == "example.com") {
            report(
                &var,
                &var_sql,
                format!("values {domains:?} lack example.com"),
            );
            continue;
        }
        for q in panel_queries(&path, &dash) {
            let sql = match expand(&q.sql, &domains) {
                Ok(s) => qualify(&s, &db.database),
                Err(e) => {
                    report(&q, &q.sql, e);
                    continue;
                }
            };
            ran += 1;
            if let Err(e) = run(&db, &sql).and_then(|a| check_answer(&q, &a)) {
                report(&q, &sql, e);
            }
        }
    }
    for q in doc_queries() {
        let sql = qualify(&q.sql, &db.database);
        ran += 1;
        if let Err(e) = run(&db, &sql).and_then(|a| check_answer(&q, &a)) {
            report(&q, &sql, e);
        }
    }
    assert!(ran >= 50, "only {ran} queries found");
    assert!(
        failures.is_empty(),
        "{} of {ran} shipped queries failed on {}:\n{}",
        failures.len(),
        db.url,
        failures.join("\n")
    );
}

#[test]
fn macros_expand_like_the_plugin() {
    let domains = ["example.com".to_owned(), "o'brien.example".to_owned()];
    assert_eq!(
        expand(
            "WHERE $__timeFilter(date_begin) AND $__dateFilter( day ) AND policy_domain IN (${domain:singlequote})",
            &domains
        )
        .unwrap(),
        "WHERE date_begin >= toDateTime(1500000000) AND date_begin <= toDateTime(1900000000) \
         AND day >= toDate('2017-07-14') AND day <= toDate('2030-03-17') \
         AND policy_domain IN ('example.com','o\\'brien.example')"
    );
    assert_eq!(
        expand(
            "toDate($__toTime) - toDate($__fromTime), $domain",
            &domains[..1]
        )
        .unwrap(),
        "toDate(toDateTime(1900000000)) - toDate(toDateTime(1500000000)), 'example.com'"
    );
    assert!(expand("$__timeInterval(day)", &domains).is_err());
    assert!(expand("$domains", &domains).is_err());
    assert_eq!(
        qualify(
            "FROM dmarc.records JOIN xdmarc.t WHERE 'dmarc.' = 1",
            "test_q"
        ),
        "FROM test_q.records JOIN xdmarc.t WHERE 'test_q.' = 1"
    );
    assert_eq!(
        lint("SELECT a FROM dmarc.t GROUP BY 1 ORDER BY 2 DESC").len(),
        2
    );
    assert_eq!(lint("SELECT a FROM t").len(), 1);
    assert_eq!(lint("SELECT messages FROM dmarc.records_daily").len(), 1);
    assert!(
        lint("SELECT sum(messages) FROM dmarc.records_daily GROUP BY day ORDER BY day").is_empty()
    );
}
