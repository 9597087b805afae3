//! Every shipped query runs: each Grafana dashboard panel and template variable
//! (deploy/grafana/dashboards/*.json) and each ```sql block of docs/queries.md, on the
//! real ClickHouse 18.16 (started by `deploy/dev/clickhouse.sh`), over the sample reports,
//! the shared corpus and a few recent reports, so that every query has rows to read. One
//! of them is for a policy domain a stranger could send, `o'brien"s.example\`: every panel
//! runs with it selected, alone and with another, and must show its rows. The dashboards,
//! the Grafana provisioning files and the ClickHouse users of deploy/compose are also
//! checked, and the users run on 18.16 as far as 18.16 understands them.
//!
//! The Grafana macros are expanded as the grafana-clickhouse-datasource plugin (v4)
//! expands them, for a fixed range (the same rules as deploy/dev/extract_dashboard_sql.py,
//! which feeds the same queries to the current engine):
//!
//! - `$__conditionalAll(condition, $domain)` (the plugin, in the browser, before the
//!   variables) -> `1=1` when the variable is "All" (or nothing is selected), else the
//!   condition;
//! - `${domain:singlequote}` (Grafana) -> the selected values (every value for "All"),
//!   each in `'...'` with `'` escaped as `\'` and nothing else: a backslash is left as it
//!   is, so a stored value ending in one would end the string early. The variable's values
//!   are therefore hex (`hex(policy_domain)`, its first column: the plugin takes the first
//!   column as the value and the second as the label), and panels filter with
//!   `unhex(...)`: only hex digits reach the SQL;
//! - `$__timeFilter(col)` -> `col >= toDateTime(FROM) AND col <= toDateTime(TO)`
//! - `$__dateFilter(col)` -> `col >= toDate('FROM') AND col <= toDate('TO')` (for `Date`
//!   columns: 18.16 compares a `Date` with a `DateTime` wrongly and returns no rows)
//! - `$__fromTime`, `$__toTime` -> `toDateTime(FROM)`, `toDateTime(TO)`
//! - the other variables ([`SOURCE_VARIABLES`]: the source dashboard's, the league table's),
//!   each tested in the condition of its own `$__conditionalAll(..., $ip)` (empty or "All":
//!   `1=1`): the textboxes `ip` and `network` as `${ip:percentencode}` inside
//!   `decodeURLComponent('...')` (Grafana's percentencode leaves only `A-Z a-z 0-9 - _ . ~`
//!   and `%XX`: nothing a user types can end the string), `service`, `owner` and `group`
//!   (hex values, like `domain`) as `unhex(arrayJoin([${service:singlequote}]))`. A
//!   dashboard with them runs each panel once more per variable, with that one set
//!   ([`source_selections`]).
//! - the one-domain dashboard's `domain` variable is single-valued (no "All"): its panels
//!   read it only as `unhex(arrayJoin([${domain:singlequote}]))`, outside any
//!   `$__conditionalAll`, and run once per domain of [`single_domains`].
//!
//! Any other `$` in a query fails the test (`$domain` or `${domain}` elsewhere too: their
//! format splices values unescaped): a new macro is added here on purpose.
//!
//! Besides the reports, the test loads ingest/tests/common/generated_domains.sql: an
//! inventory of 10,000 generated domains with their reports, DNS snapshots and status
//! history, so that every query runs at that scale (and the league table and the
//! one-domain dashboard have rows); [`league_and_domain_dashboards_show_the_inventory`]
//! checks what they show.

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

/// Whether the dashboard's `domain` variable is single-valued (no "All": the one-domain
/// dashboard).
fn single_domain_variable(dash: &Value) -> bool {
    dash["templating"]["list"]
        .as_array()
        .and_then(|l| l.iter().find(|v| v["name"] == "domain"))
        .is_some_and(|v| v["multi"] == false && v["includeAll"] == false)
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

/// The dashboard's `domain` variable as a panel sees it.
#[derive(Clone, Copy)]
struct Domain<'a> {
    /// "All" is selected (Grafana's `$__all`).
    all: bool,
    /// What `${domain:singlequote}` lists: the selected values, or every value for "All".
    values: &'a [String],
}

/// Grafana's `singlequote` format: `'a','b'`, a `'` in a value escaped as `\'`. Nothing
/// else is escaped (a backslash stays as it is).
fn singlequote(values: &[String]) -> String {
    values
        .iter()
        .map(|v| format!("'{}'", v.replace('\'', "\\'")))
        .collect::<Vec<_>>()
        .join(",")
}

/// Upper-case hex of `s`'s bytes: ClickHouse's `hex()`, the `domain` variable's values.
fn hex(s: &str) -> String {
    s.bytes().map(|b| format!("{b:02X}")).collect()
}

/// The variables other than `domain` (the source dashboard's, the league table's) and the
/// one format each is read with.
const SOURCE_VARIABLES: [(&str, &str); 5] = [
    ("ip", "percentencode"),
    ("network", "percentencode"),
    ("service", "singlequote"),
    ("owner", "singlequote"),
    ("group", "singlequote"),
];

/// How the one-domain dashboard's single-value `domain` variable is read, everywhere.
const SINGLE_DOMAIN_FILTER: &str = "unhex(arrayJoin([${domain:singlequote}]))";

/// The source variables set for a query: (name, value: a textbox's text, or one hex value
/// of `service`). Those not listed are empty or "All".
type SourceSelection<'a> = &'a [(&'a str, String)];

/// Grafana's `percentencode` (encodeURIComponent, and `!'()*` too): `A-Z a-z 0-9 - _ . ~`
/// stay, every other byte becomes `%XX`.
fn percentencode(text: &str) -> String {
    text.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
                char::from(b).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

const CONDITIONAL_ALL: &str = "$__conditionalAll(";

/// The arguments of the macro whose `(` is at `open`, as the plugin splits them: at commas
/// outside nested parentheses (quotes are not looked at); with the index after its `)`.
/// `None` if the parentheses do not close.
fn macro_args(sql: &str, open: usize) -> Option<(Vec<&str>, usize)> {
    let mut depth = 0;
    let mut args = Vec::new();
    let mut start = open + 1;
    for (i, c) in sql[open..].char_indices().map(|(i, c)| (open + i, c)) {
        match c {
            '(' => depth += 1,
            ')' => depth -= 1,
            ',' if depth == 1 => {
                args.push(&sql[start..i]);
                start = i + 1;
            }
            _ => {}
        }
        if depth == 0 {
            args.push(&sql[start..i]);
            return Some((args, i + 1));
        }
    }
    None
}

/// The variable a `$__conditionalAll` tests: `$name` or `${name}`, as the plugin reads
/// its second argument (`${name:format}` is not recognised: the condition always stays).
fn variable_name(arg: &str) -> Option<&str> {
    let word = |s: &str| !s.is_empty() && s.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
    let arg = arg.trim();
    if let Some(inner) = arg.strip_prefix("${").and_then(|a| a.strip_suffix('}')) {
        if word(inner) {
            return Some(inner);
        }
    }
    let rest = arg.strip_prefix('$')?;
    let end = rest
        .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
        .unwrap_or(rest.len());
    Some(&rest[..end]).filter(|n| !n.is_empty())
}

/// Every `$__conditionalAll(condition, variable)` of `sql`: (condition, variable argument).
fn conditional_alls(sql: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut from = 0;
    while let Some(at) = sql[from..].find(CONDITIONAL_ALL).map(|i| from + i) {
        match macro_args(sql, at + CONDITIONAL_ALL.len() - 1) {
            Some((args, end)) => {
                out.push((
                    args[0].to_owned(),
                    args.get(1..).unwrap_or_default().join(","),
                ));
                from = end;
            }
            None => break,
        }
    }
    out
}

/// The plugin's `$__conditionalAll` (`applyConditionalAll`): from the last one back, the
/// macro becomes `1=1` if its variable is "All" or has nothing selected, else its
/// condition. A macro without two arguments stops the expansion where it is (the plugin
/// returns the query as it stands).
fn expand_conditional_all(sql: &str, domain: Domain) -> String {
    expand_conditional_all_with(sql, domain, &[])
}

/// [`expand_conditional_all`], with the source variables of `source` set.
fn expand_conditional_all_with(sql: &str, domain: Domain, source: SourceSelection) -> String {
    let mut s = sql.to_owned();
    while let Some(at) = s.rfind(CONDITIONAL_ALL) {
        let Some((args, end)) = macro_args(&s, at + CONDITIONAL_ALL.len() - 1) else {
            return s;
        };
        if args.len() != 2 {
            return s;
        }
        let everything = match variable_name(args[1]) {
            Some("domain") => domain.all || domain.values.is_empty(),
            Some(v) if SOURCE_VARIABLES.iter().any(|(n, _)| *n == v) => {
                !source.iter().any(|(n, _)| *n == v)
            }
            _ => false,
        };
        let phrase = if everything { "1=1" } else { args[0] }.to_owned();
        s.replace_range(at..end, &phrase);
    }
    s
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
fn expand(sql: &str, domain: Domain) -> Result<String, String> {
    expand_with(sql, domain, &[])
}

/// [`expand`], with the source variables of `source` set (the others empty or "All").
fn expand_with(sql: &str, domain: Domain, source: SourceSelection) -> Result<String, String> {
    let mut s = expand_conditional_all_with(sql, domain, source);
    s = expand_call(&s, "$__timeFilter", |c| {
        format!("{c} >= toDateTime({FROM_TS}) AND {c} <= toDateTime({TO_TS})")
    });
    s = expand_call(&s, "$__dateFilter", |c| {
        format!("{c} >= toDate('{FROM_DATE}') AND {c} <= toDate('{TO_DATE}')")
    });
    s = s
        .replace("$__fromTime", &format!("toDateTime({FROM_TS})"))
        .replace("$__toTime", &format!("toDateTime({TO_TS})"))
        .replace("${domain:singlequote}", &singlequote(domain.values));
    for (name, format) in SOURCE_VARIABLES {
        let value = source
            .iter()
            .find(|(n, _)| *n == name)
            .map_or("", |(_, v)| v.as_str());
        let text = match format {
            "percentencode" => percentencode(value),
            _ => singlequote(&[value.to_owned()]),
        };
        s = s.replace(&format!("${{{name}:{format}}}"), &text);
    }
    match s.find('$') {
        Some(at) if s[at..].starts_with("$domain") || s[at..].starts_with("${domain") => Err(
            "the `domain` variable is used only as ${domain:singlequote}, in the condition of \
             $__conditionalAll(..., $domain): other formats splice its values unescaped"
                .into(),
        ),
        Some(at) => Err(format!(
            "unknown macro or variable at {:?}",
            &s[at..(at + 24).min(s.len())]
        )),
        None => Ok(s),
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

/// The variables a query may read (see [`domain_filter_problems`]).
const FILTER_VARIABLES: [&str; 6] = ["domain", "ip", "network", "service", "owner", "group"];

/// The `domain` variable reaches a query only as hex digits: `${domain:singlequote}` only
/// in the condition of `$__conditionalAll(..., $domain)`, and there only inside
/// `unhex(arrayJoin([...]))`; `service`, `owner` and `group` the same way. The textboxes
/// `ip` and `network` only as `decodeURLComponent('${ip:percentencode}')`, in their own
/// condition. A single-value `domain` (`single_domain`: no "All") only as
/// [`SINGLE_DOMAIN_FILTER`], and never in a `$__conditionalAll`.
fn domain_filter_problems(sql: &str, single_domain: bool) -> Vec<String> {
    let mut problems = Vec::new();
    for (condition, variable) in conditional_alls(sql) {
        let name = variable.trim().strip_prefix('$').unwrap_or("");
        if single_domain && name == "domain" {
            problems.push(format!(
                "a single-value domain is read without $__conditionalAll: {condition:?}"
            ));
        }
        let others = FILTER_VARIABLES.into_iter().filter(|n| *n != name);
        for other in others {
            if condition.contains(&format!("${{{other}"))
                || has_word(&condition, &format!("${other}"))
            {
                problems.push(format!(
                    "the condition of ${name} reads ${other}: {condition:?}"
                ));
            }
        }
        match name {
            "domain" | "service" | "owner" | "group" => {
                if !condition.contains(&format!("unhex(arrayJoin([${{{name}:singlequote}}]))"))
                    || condition.matches(&format!("${{{name}")).count() != 1
                {
                    problems.push(format!(
                        "the condition reads ${name} as unhex(arrayJoin([${{{name}:singlequote}}])), \
                         once: {condition:?}"
                    ));
                }
            }
            "ip" | "network" => {
                let read = format!("decodeURLComponent('${{{name}:percentencode}}')");
                if !condition.contains(&read)
                    || condition.matches(&format!("${{{name}")).count()
                        != condition.matches(&read).count()
                {
                    problems.push(format!(
                        "the condition reads ${name} only as {read}: {condition:?}"
                    ));
                }
            }
            _ => problems.push(format!(
                "$__conditionalAll's second argument must be one of {FILTER_VARIABLES:?} (with \
                 a $), not {variable:?}"
            )),
        }
    }
    let mut outside = expand_conditional_all(
        sql,
        Domain {
            all: true,
            values: &[],
        },
    );
    if single_domain {
        outside = outside.replace(SINGLE_DOMAIN_FILTER, "");
    }
    for name in FILTER_VARIABLES {
        if outside.contains(&format!("${{{name}")) || has_word(&outside, &format!("${name}")) {
            problems.push(format!(
                "the {name} variable is used outside $__conditionalAll"
            ));
        }
    }
    problems
}

/// Runs `sql` over HTTP with `FORMAT JSON`: the parsed answer, or the server's error.
fn run(db: &TestDb, sql: &str) -> Result<Value, String> {
    run_at(&format!("{}/", db.url), sql)
}

/// [`run`] at `url` (which may name a user: `?user=..&password=..`).
fn run_at(url: &str, sql: &str) -> Result<Value, String> {
    let body = format!("{}\nFORMAT JSON", sql.trim().trim_end_matches(';'));
    let out = Command::new("curl")
        .args(["-sS", "--fail-with-body", "--data-binary", &body, url])
        .output()
        .map_err(|e| format!("curl: {e}"))?;
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    if !out.status.success() {
        return Err(format!("{}{}", text, String::from_utf8_lossy(&out.stderr)));
    }
    serde_json::from_str(&text).map_err(|e| format!("answer is not JSON ({e}): {text}"))
}

/// Checks an answer against what its panel expects; `Err` says what is wrong. With
/// `rows_required` false (a selection the panel may have nothing to show for), only its
/// columns are checked.
fn check_answer(q: &Shipped, answer: &Value, rows_required: bool) -> Result<(), String> {
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
    if !rows_required {
        return Ok(());
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

/// A report for `domain` covering one day `days_ago` days back, from `org`, with
/// records that give every documented query rows: an aligned sender, a third party
/// signing with its own domain and failing SPF on ours, forwarded mail, unsigned IPv6
/// mail, and a record whose reporter passes DMARC without any aligned result.
fn recent_report(domain: &str, org: &str, id: &str, days_ago: u64) -> String {
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
        // A Microsoft 365 outbound host of the test DNS server: a known service.
        record(
            "192.0.2.44",
            6,
            "none",
            ("pass", "pass"),
            "",
            "example.com",
            "example.com",
            &(dkim("example.com", "pass") + &spf("example.com", "pass")),
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
    .replace(
        "<policy_published><domain>example.com</domain>",
        &format!("<policy_published><domain>{domain}</domain>"),
    )
}

#[test]
fn dashboards_and_provisioning_are_well_formed() {
    let dashboards = dashboards();
    let expected: BTreeSet<&str> = [
        "domain.json",
        "failures.json",
        "league-table.json",
        "overview.json",
        "policy-readiness.json",
        "reporters.json",
        "source.json",
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
        let find = |n: &str| {
            dash["templating"]["list"]
                .as_array()
                .and_then(|l| l.iter().find(|v| v["name"] == n))
        };
        // A dashboard of domains has `owner` and `group` (multi-value, "All", hex values
        // of the inventory's columns); every other one a `domain` variable: multi-value
        // with "All", or single-value without (the one-domain dashboard).
        let inventory_variables = [("owner", "owner"), ("group", "group_name")];
        let by_inventory = find("owner").is_some() || find("group").is_some();
        for (var, column) in inventory_variables.iter().filter(|_| by_inventory) {
            match find(var) {
                Some(v)
                    if v["type"] == "query"
                        && v["multi"] == true
                        && v["includeAll"] == true
                        && v["datasource"]["uid"] == DATASOURCE_UID
                        && v["definition"] == v["query"]
                        && v["query"].as_str().is_some_and(|q| {
                            q.starts_with(&format!("SELECT hex({column}) AS __value, "))
                                && q.contains(" AS __text FROM dmarc.domains ")
                        }) => {}
                other => bad(format!("`{var}` variable: {other:?}")),
            }
        }
        match find("domain") {
            None if by_inventory => {}
            None => bad("no `domain` template variable".into()),
            Some(v) => {
                let multi = v["multi"] == true && v["includeAll"] == true;
                let single = v["multi"] == false && v["includeAll"] == false;
                if v["type"] != "query"
                    || !(multi || single)
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
        let example = [hex("example.com")];
        let set_one: Vec<Vec<(&str, String)>> = SOURCE_VARIABLES
            .iter()
            .map(|(n, _)| vec![(*n, hex("example.com"))])
            .collect();
        for q in all {
            for (all, values) in [(true, &example[..]), (false, &example[..])] {
                if let Err(e) = expand(&q.sql, Domain { all, values }) {
                    problems.push(format!("{}: {e}", q.origin));
                }
            }
            for source in &set_one {
                let domain = Domain {
                    all: true,
                    values: &example,
                };
                if let Err(e) = expand_with(&q.sql, domain, source) {
                    problems.push(format!("{}: {e}", q.origin));
                }
            }
            for l in lint(&q.sql) {
                problems.push(format!("{}: {l}", q.origin));
            }
            for l in domain_filter_problems(&q.sql, single_domain_variable(dash)) {
                problems.push(format!("{}: {l}", q.origin));
            }
        }
        // The source dashboard: its textboxes and its `service` variable (hex values, like
        // `domain`).
        if name(path) == "source.json" {
            let find = |n: &str| {
                dash["templating"]["list"]
                    .as_array()
                    .and_then(|l| l.iter().find(|v| v["name"] == n))
            };
            for textbox in ["ip", "network"] {
                if find(textbox).map(|v| &v["type"]) != Some(&Value::from("textbox")) {
                    problems.push(format!("source.json: no `{textbox}` textbox variable"));
                }
            }
            match find("service") {
                Some(v)
                    if v["type"] == "query"
                        && v["includeAll"] == true
                        && v["datasource"]["uid"] == DATASOURCE_UID
                        && v["definition"] == v["query"]
                        && v["query"]
                            .as_str()
                            .is_some_and(|q| q.starts_with("SELECT hex(service) AS __value, ")) => {
                }
                other => problems.push(format!("source.json: `service` variable: {other:?}")),
            }
        }
        // The variable: hex values first (the plugin's value column), a label that cannot
        // end a string either (should a plugin version ever put the label into the SQL).
        let var = dash["templating"]["list"]
            .as_array()
            .and_then(|l| l.iter().find(|v| v["name"] == "domain"));
        if let Some(v) = var {
            let sql = v["query"].as_str().unwrap_or("");
            let value = if single_domain_variable(dash) {
                "SELECT hex(domain) AS __value, "
            } else {
                "SELECT hex(policy_domain) AS __value, "
            };
            if !sql.starts_with(value)
                || !sql.contains(" AS __text ")
                || v["definition"] != v["query"]
            {
                problems.push(format!(
                    "{}: the domain variable's query must select hex(policy_domain) AS __value \
                     (hex(domain) on the one-domain dashboard), then the label AS __text \
                     (definition = query): {sql:?}",
                    name(path)
                ));
            }
        }
    }
    let docs = doc_queries();
    if !(10..=30).contains(&docs.len()) {
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

/// A policy domain a stranger could send: both quotes and a trailing backslash.
const QUOTE_DOMAIN: &str = "o'brien\"s.example\\";

/// A recent report ([`recent_report`]); [`QUOTE_DOMAIN`]'s publish no `sp=`, so that p
/// governs all their mail (its header_from is example.com: the policy-readiness panels
/// count only mail p governs).
fn recent_report_of(domain: &str, org: &str, id: &str, days_ago: u64) -> String {
    let report = recent_report(domain, org, id, days_ago);
    if domain == QUOTE_DOMAIN {
        report.replace("<sp>none</sp>", "")
    } else {
        report
    }
}

/// Writes the recent reports into `dir`: two for example.com (one from a reporter that
/// went silent) and one for [`QUOTE_DOMAIN`].
fn write_recent_reports(dir: &Path) {
    for (file, domain, org, id, days_ago) in [
        (
            "recent.xml",
            "example.com",
            "Recent Reporter",
            "queries-recent-1",
            1,
        ),
        (
            "silent.xml",
            "example.com",
            "Silent Reporter",
            "queries-silent-1",
            10,
        ),
        (
            "quote.xml",
            QUOTE_DOMAIN,
            "Quote Reporter",
            "queries-quote-1",
            2,
        ),
    ] {
        std::fs::write(dir.join(file), recent_report_of(domain, org, id, days_ago)).unwrap();
    }
    // A reporter that reported every day for a week, then stopped 20 days ago: gone
    // silent (a quiet domain's reporters, with long gaps as a matter of course, are not).
    for domain in ["example.com", QUOTE_DOMAIN] {
        for day in 20..20 + STEADY_DAYS {
            let id = format!("steady-{}-{day}", hex(domain));
            let report = recent_report_of(domain, "Steady Reporter", &id, day);
            std::fs::write(dir.join(format!("{id}.xml")), report).unwrap();
        }
    }
}

/// Days the steady reporter of [`write_recent_reports`] reported, per domain.
const STEADY_DAYS: u64 = 7;

/// Reports [`write_recent_reports`] writes.
const RECENT_REPORTS: u64 = 3 + 2 * STEADY_DAYS;

/// Listed domains of generated_domains.sql: 10,000 generated ones, example.com and
/// new.example (removed.example is removed).
const LISTED_DOMAINS: u64 = 10_002;

/// A generated domain whose DNS snapshots have the error spf-too-many-lookups.
const KNOWN_FINDING_DOMAIN: &str = "gen-00011.example";

/// A generated domain whose policy went from p=reject to p=none in its newest snapshot.
const WEAKENED_DOMAIN: &str = "gen-00007.example";

/// Loads ingest/tests/common/generated_domains.sql (after the reports: its DNS snapshots
/// cover their policy domains too) into the test's database.
fn load_generated_domains(db: &TestDb) {
    let path = common::repo_root().join("ingest/tests/common/generated_domains.sql");
    let text = std::fs::read_to_string(&path).expect("generated_domains.sql");
    let mut statement = String::new();
    let mut count = 0;
    for line in text.lines() {
        if line.trim_start().starts_with("--") {
            continue;
        }
        statement.push_str(line);
        statement.push('\n');
        if line.trim_end().ends_with(';') {
            db.sql(&qualify(
                statement.trim().trim_end_matches(';'),
                &db.database,
            ));
            statement.clear();
            count += 1;
        }
    }
    assert!(
        statement.trim().is_empty(),
        "generated_domains.sql: no final `;`"
    );
    assert!(count >= 6, "generated_domains.sql: {count} statements");
    assert_eq!(
        db.number("SELECT count() FROM {database}.domains WHERE removed = 0"),
        LISTED_DOMAINS
    );
}

/// The options of a `domain` variable from its query's answer, as (value, label): checked
/// to be the hex of a stored domain first, then that domain with `'` and `\` as `?`.
fn domain_options(answer: &Value) -> Result<Vec<(String, String)>, String> {
    let names: Vec<&str> = answer["meta"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|m| m["name"].as_str())
        .collect();
    if names != ["__value", "__text"] {
        return Err(format!("columns {names:?}, not [__value, __text]"));
    }
    let mut options = Vec::new();
    for row in answer["data"].as_array().into_iter().flatten() {
        let value = row["__value"].as_str().unwrap_or("");
        let text = row["__text"].as_str().unwrap_or("");
        let bytes: Option<Vec<u8>> = (value.len() % 2 == 0
            && value
                .bytes()
                .all(|b| matches!(b, b'0'..=b'9' | b'A'..=b'F')))
        .then(|| {
            (0..value.len())
                .step_by(2)
                .filter_map(|i| u8::from_str_radix(&value[i..i + 2], 16).ok())
                .collect()
        });
        let domain = bytes.map(|b| String::from_utf8_lossy(&b).into_owned());
        match domain {
            Some(d) if !d.is_empty() && text == d.replace(['\'', '\\'], "?") => {}
            _ => return Err(format!("option {value:?} / {text:?}: not hex / the label")),
        }
        options.push((value.to_owned(), text.to_owned()));
    }
    Ok(options)
}

/// The values the other variables are set to, one at a time, on a dashboard that has
/// them: an address and a network name of the recent reports' sources (192.0.2.1, named
/// mail.example.test by the test DNS server), the first option of the `service` variable,
/// and of `owner` and `group` the generated inventory's 'Owner 11' and 'Schools' (its
/// domains have every colour, and new.example, not checked yet) if listed, else their first
/// option (`options`: (variable, its values); none if no source of the test data is a
/// known service: then that run is left out). Each run has `domain` "All".
fn source_selections(
    dash: &Value,
    options: &[(String, Vec<String>)],
) -> Vec<(&'static str, String)> {
    let names: Vec<&str> = dash["templating"]["list"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|v| v["name"].as_str())
        .collect();
    let mut out = Vec::new();
    if names.contains(&"ip") {
        out.push(("ip", "192.0.2.1".to_owned()));
    }
    if names.contains(&"network") {
        out.push(("network", "Example.Test".to_owned()));
    }
    for (var, preferred) in [("service", ""), ("owner", "Owner 11"), ("group", "Schools")] {
        let listed = options
            .iter()
            .find(|(n, _)| n == var)
            .map_or(&[][..], |(_, o)| o.as_slice());
        let value = listed
            .iter()
            .find(|v| **v == hex(preferred))
            .or(listed.first());
        if let (true, Some(value)) = (names.contains(&var), value) {
            out.push((var, value.clone()));
        }
    }
    out
}

/// The query variables of `dash` other than `domain` (the source dashboard's `service`, the
/// league table's `owner` and `group`): (name, query).
fn other_query_variables(dash: &Value) -> Vec<(String, String)> {
    dash["templating"]["list"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|v| v["type"] == "query" && v["name"] != "domain")
        .map(|v| {
            let query = match &v["query"] {
                Value::String(s) => s.clone(),
                q => q["rawSql"].as_str().unwrap_or("").to_owned(),
            };
            (v["name"].as_str().unwrap_or("").to_owned(), query)
        })
        .collect()
}

/// The domains the one-domain dashboard is run with, one at a time: (hex value, whether
/// every panel must have rows). [`QUOTE_DOMAIN`] is a policy domain of reports only (not
/// listed: no status, no history), example.com and gen-00011.example are listed.
fn single_domains() -> Vec<(String, bool)> {
    vec![
        (hex(QUOTE_DOMAIN), false),
        (hex("example.com"), true),
        (hex(KNOWN_FINDING_DOMAIN), true),
    ]
}

/// Runs every dashboard's `domain` variable and panels at `url` (a server whose dmarc
/// database is `database`), the panels with each selection of the variable: "All",
/// [`QUOTE_DOMAIN`] alone, and it with example.com ([`single_domains`] one at a time for a
/// single-value variable; "All" only on a dashboard without one); then checks that each
/// domain filter of the panels keeps exactly the selected domains. Returns how many
/// queries ran; what failed goes to `failures`.
fn run_dashboards(url: &str, database: &str, failures: &mut Vec<String>) -> usize {
    let mut ran = 0;
    let mut fail = |origin: &str, sql: &str, error: String| {
        failures.push(format!("--- {origin}\n{sql}\n--- {error}\n"));
    };
    let quote = [hex(QUOTE_DOMAIN)];
    let both = [hex(QUOTE_DOMAIN), hex("example.com")];
    let singles: Vec<(String, bool)> = single_domains();
    let single_values: Vec<[String; 1]> = singles.iter().map(|(v, _)| [v.clone()]).collect();
    let mut conditions = BTreeSet::new();
    for (path, dash) in dashboards() {
        let mut every = Vec::new();
        if let Some(var_sql) = domain_variable_query(&dash) {
            let origin = format!("{}: variable $domain", name(&path));
            let var_sql = qualify(&var_sql, database);
            ran += 1;
            let options = match run_at(url, &var_sql).and_then(|a| domain_options(&a)) {
                Ok(o) => o,
                Err(e) => {
                    fail(&origin, &var_sql, e);
                    continue;
                }
            };
            every = options.into_iter().map(|(v, _)| v).collect();
            let wanted = if single_domain_variable(&dash) {
                singles.iter().map(|(v, _)| v.clone()).collect()
            } else {
                both.to_vec()
            };
            if let Some(missing) = wanted.iter().find(|v| !every.contains(v)) {
                fail(&origin, &var_sql, format!("no option {missing}"));
                continue;
            }
        }
        // The other query variables (hex values and labels, like `domain`; they may list
        // nothing): the source dashboard's `service`, the league table's `owner`, `group`.
        let mut options = Vec::new();
        for (var, query) in other_query_variables(&dash) {
            let origin = format!("{}: variable ${var}", name(&path));
            let sql = qualify(&query, database);
            ran += 1;
            match run_at(url, &sql).and_then(|a| domain_options(&a)) {
                Ok(o) => options.push((var, o.into_iter().map(|(v, _)| v).collect())),
                Err(e) => fail(&origin, &sql, e),
            }
        }
        let sources = source_selections(&dash, &options);
        let all = Domain {
            all: true,
            values: &every,
        };
        let selections: Vec<(String, Domain, bool)> = if single_domain_variable(&dash) {
            singles
                .iter()
                .zip(&single_values)
                .map(|((v, rows), values)| {
                    let label = String::from_utf8_lossy(
                        &(0..v.len())
                            .step_by(2)
                            .map(|i| u8::from_str_radix(&v[i..i + 2], 16).unwrap())
                            .collect::<Vec<u8>>(),
                    )
                    .into_owned();
                    (label, Domain { all: false, values }, *rows)
                })
                .collect()
        } else if every.is_empty() {
            vec![("All".to_owned(), all, true)]
        } else {
            vec![
                ("All".to_owned(), all, true),
                (
                    "the quote domain".to_owned(),
                    Domain {
                        all: false,
                        values: &quote,
                    },
                    true,
                ),
                (
                    "the quote domain and example.com".to_owned(),
                    Domain {
                        all: false,
                        values: &both,
                    },
                    true,
                ),
            ]
        };
        for q in panel_queries(&path, &dash) {
            conditions.extend(
                conditional_alls(&q.sql)
                    .into_iter()
                    .filter(|(_, v)| v.trim() == "$domain")
                    .map(|(c, _)| c),
            );
            let runs = selections
                .iter()
                .map(|(selected, domain, rows)| (selected.clone(), *domain, *rows, None))
                .chain(sources.iter().map(|(var, value)| {
                    (
                        format!("All, ${var} = {value:?}"),
                        selections[0].1,
                        true,
                        Some((*var, value.clone())),
                    )
                }));
            for (selected, domain, rows, set) in runs {
                let origin = format!("{} [domain: {selected}]", q.origin);
                let source: Vec<(&str, String)> = set.into_iter().collect();
                let sql = match expand_with(&q.sql, domain, &source) {
                    Ok(s) => qualify(&s, database),
                    Err(e) => {
                        fail(&origin, &q.sql, e);
                        continue;
                    }
                };
                ran += 1;
                if let Err(e) = run_at(url, &sql).and_then(|a| check_answer(&q, &a, rows)) {
                    fail(&origin, &sql, e);
                }
            }
        }
    }
    // Rows, above, are not enough: a mangled filter could keep every domain.
    for condition in &conditions {
        for selected in [&[QUOTE_DOMAIN][..], &[QUOTE_DOMAIN, "example.com"]] {
            let values: Vec<String> = selected.iter().map(|d| hex(d)).collect();
            let domain = Domain {
                all: false,
                values: &values,
            };
            let sql = match expand(condition, domain) {
                Ok(c) => qualify(
                    &format!(
                        "SELECT arraySort(groupUniqArray(policy_domain)) AS domains \
                         FROM dmarc.reports WHERE {c}"
                    ),
                    database,
                ),
                Err(e) => {
                    fail("a domain filter", condition, e);
                    continue;
                }
            };
            ran += 1;
            let mut want: Vec<&str> = selected.to_vec();
            want.sort();
            match run_at(url, &sql) {
                Ok(a) => {
                    let got: Vec<&str> = a["data"][0]["domains"]
                        .as_array()
                        .into_iter()
                        .flatten()
                        .filter_map(Value::as_str)
                        .collect();
                    if got != want {
                        fail(
                            "a domain filter",
                            &sql,
                            format!("keeps {got:?}, not {want:?}"),
                        );
                    }
                }
                Err(e) => fail("a domain filter", &sql, e),
            }
        }
    }
    ran
}

#[test]
fn every_shipped_query_runs_on_clickhouse() {
    let db = TestDb::fresh("queries");
    let recent = tempfile::tempdir().unwrap();
    write_recent_reports(recent.path());
    let mut paths = vec![
        common::repo_root().join("sample-reports"),
        recent.path().to_owned(),
    ];
    paths.extend(common::corpus());
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
        3,
        "the recent reports were not imported: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        db.number(&format!(
            "SELECT count() FROM {{database}}.reports WHERE hex(policy_domain) = '{}'",
            hex(QUOTE_DOMAIN)
        )),
        1 + STEADY_DAYS,
        "the quote domain is not stored as sent"
    );

    // Names of the recent reports' sources, from the test DNS server (192.0.2.2 names a
    // host that does not point back; 2001:db8::1 is confirmed).
    common::dns::shared_dns();
    let out = db
        .command(&["enrich"])
        .env("DMARC_INGEST_DNS_TIMEOUT_MS", "300")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "enrich: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        db.number("SELECT count() FROM {database}.source_names WHERE ptr_status = 'unconfirmed'")
            > 0
    );

    let started = std::time::Instant::now();
    load_generated_domains(&db);
    eprintln!("generated domains loaded in {:?}", started.elapsed());

    let mut failures = Vec::new();
    let started = std::time::Instant::now();
    let mut ran = run_dashboards(&format!("{}/", db.url), &db.database, &mut failures);
    eprintln!("{ran} dashboard queries in {:?}", started.elapsed());
    league_and_domain_dashboards_show_the_inventory(&db, &mut failures);
    for q in doc_queries() {
        let sql = qualify(&q.sql, &db.database);
        ran += 1;
        if let Err(e) = run(&db, &sql).and_then(|a| check_answer(&q, &a, true)) {
            failures.push(format!("--- {}\n{sql}\n--- {e}\n", q.origin));
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {ran} shipped queries failed on {}:\n{}",
        failures.len(),
        db.url,
        failures.join("\n")
    );
    assert!(ran >= 150, "only {ran} queries found");
}

/// The answer's rows of one panel of one dashboard, its macros expanded with `domain` and
/// the other variables of `set`.
fn panel_rows(
    db: &TestDb,
    file: &str,
    panel: u64,
    domain: Domain,
    set: SourceSelection,
) -> Result<Vec<Value>, String> {
    let (_, dash) = dashboards()
        .into_iter()
        .find(|(p, _)| name(p) == file)
        .ok_or(format!("no {file}"))?;
    let p = panels(&dash)
        .into_iter()
        .find(|p| p["id"] == panel)
        .cloned()
        .ok_or(format!("{file}: no panel {panel}"))?;
    let raw = p["targets"][0]["rawSql"].as_str().unwrap_or("");
    let sql = qualify(&expand_with(raw, domain, set)?, &db.database);
    let answer = run(db, &sql)?;
    Ok(answer["data"].as_array().cloned().unwrap_or_default())
}

/// A number of a JSON answer (ClickHouse quotes 64-bit integers).
fn number(v: &Value) -> u64 {
    v.as_u64()
        .or_else(|| v.as_str().and_then(|s| s.parse().ok()))
        .unwrap_or(u64::MAX)
}

/// What the league table and the one-domain dashboard show of the generated inventory
/// (the test data of [`load_generated_domains`]); what is wrong goes to `failures`.
fn league_and_domain_dashboards_show_the_inventory(db: &TestDb, failures: &mut Vec<String>) {
    let mut problems = Vec::new();
    let all = Domain {
        all: true,
        values: &[],
    };
    let owner = [("owner", hex("Owner 11"))];
    let league =
        |panel: u64, set: SourceSelection| panel_rows(db, "league-table.json", panel, all, set);
    let one = |panel: u64, domain: &str| {
        let values = [hex(domain)];
        panel_rows(
            db,
            "domain.json",
            panel,
            Domain {
                all: false,
                values: &values,
            },
            &[],
        )
    };
    let mut check = |what: &str, result: Result<bool, String>| match result {
        Ok(true) => {}
        Ok(false) => problems.push(format!("{what}: not so")),
        Err(e) => problems.push(format!("{what}: {e}")),
    };

    // The counts: every listed domain once, by colour; one not checked yet.
    let count = |panel: u64, column: &str| -> Result<u64, String> {
        league(panel, &[]).map(|rows| rows.first().map_or(u64::MAX, |r| number(&r[column])))
    };
    check(
        "league table: the domains stat counts every listed domain",
        count(1, "listed_domains").map(|n| n == LISTED_DOMAINS),
    );
    check(
        "league table: red + amber + green = the listed domains",
        (|| {
            Ok(
                count(2, "red_domains")? + count(3, "amber_domains")? + count(4, "green_domains")?
                    == LISTED_DOMAINS,
            )
        })(),
    );
    check(
        "league table: new.example is not checked yet",
        count(5, "unchecked_domains").map(|n| n == 1),
    );
    // The table: at most 10,000 rows, red first; one owner's 250 domains when selected.
    check(
        "league table: 10,000 rows unfiltered, red first",
        league(9, &[]).map(|rows| {
            rows.len() == 10_000
                && number(&rows[0]["colour"]) == 1
                && rows
                    .windows(2)
                    .all(|w| number(&w[0]["colour"]) <= number(&w[1]["colour"]))
        }),
    );
    check(
        "league table: owner 'Owner 11' selected: its 251 domains only",
        league(9, &owner)
            .map(|rows| rows.len() == 251 && rows.iter().all(|r| r["owner"] == "Owner 11")),
    );
    check(
        "league table: status over time counts each domain once a day",
        league(7, &[]).map(|rows| {
            !rows.is_empty()
                && rows.iter().all(|r| {
                    number(&r["red"]) + number(&r["amber"]) + number(&r["green"])
                        == LISTED_DOMAINS - 1
                })
        }),
    );
    check(
        "league table: worst owners, at most 15",
        league(8, &[]).map(|rows| (1..=15).contains(&rows.len())),
    );

    // The one-domain dashboard.
    check(
        "domain: the findings of gen-00011.example",
        one(6, KNOWN_FINDING_DOMAIN).map(|rows| {
            rows.iter()
                .any(|r| r["code"] == "spf-too-many-lookups" && r["severity"] == "error")
        }),
    );
    check(
        "domain: gen-00007.example went from p=reject to p=none",
        one(7, WEAKENED_DOMAIN).map(|rows| {
            rows.len() == 2
                && rows[0]["dmarc"]
                    .as_str()
                    .is_some_and(|d| d.contains("p=none"))
                && rows[0]["findings_new"] == "dmarc-p-none"
                && !rows[0]["previous_check"].is_null()
                && rows[1]["dmarc"]
                    .as_str()
                    .is_some_and(|d| d.contains("p=reject"))
        }),
    );
    check(
        "domain: gen-00007.example turned red",
        one(9, WEAKENED_DOMAIN).map(|rows| {
            rows.len() == 2 && number(&rows[0]["colour"]) == 1 && number(&rows[1]["colour"]) == 3
        }),
    );
    check(
        "domain: the quote domain is not listed",
        one(1, QUOTE_DOMAIN).and_then(|rows| {
            let why = one(2, QUOTE_DOMAIN)?;
            Ok(rows.len() == 1
                && number(&rows[0]["colour"]) == 0
                && why.len() == 1
                && why[0]["reason"]
                    .as_str()
                    .is_some_and(|r| r.starts_with("not in the inventory")))
        }),
    );
    check(
        "domain: the quote domain's DNS records are its own",
        one(5, QUOTE_DOMAIN).map(|rows| {
            rows.iter()
                .any(|r| r["record_type"] == "SPF" && r["name"] == QUOTE_DOMAIN)
        }),
    );
    check(
        "domain: its senders",
        one(11, KNOWN_FINDING_DOMAIN).map(|rows| rows.len() == 3),
    );

    // The other dashboards: series per domain are the top 10 and "other".
    check(
        "overview: messages per day by domain, top 10 and other",
        panel_rows(db, "overview.json", 8, all, &[]).map(|rows| {
            let series: BTreeSet<String> = rows
                .iter()
                .map(|r| r["domain"].as_str().unwrap_or("").to_owned())
                .collect();
            series.len() == 11 && series.contains("(other domains)")
        }),
    );
    for p in problems {
        failures.push(format!("--- {p}\n"));
    }
}

#[test]
fn macros_expand_like_the_plugin() {
    let values = ["6578616D706C652E636F6D".to_owned(), "o'brien\\".to_owned()];
    let some = Domain {
        all: false,
        values: &values,
    };
    let all = Domain {
        all: true,
        values: &values,
    };
    let filter = "$__conditionalAll(policy_domain IN (SELECT unhex(arrayJoin([${domain:singlequote}]))), $domain)";
    assert_eq!(
        expand(
            &format!("WHERE $__timeFilter(date_begin) AND $__dateFilter( day ) AND {filter}"),
            some
        )
        .unwrap(),
        "WHERE date_begin >= toDateTime(1500000000) AND date_begin <= toDateTime(1900000000) \
         AND day >= toDate('2017-07-14') AND day <= toDate('2030-03-17') \
         AND policy_domain IN (SELECT unhex(arrayJoin(['6578616D706C652E636F6D','o\\'brien\\'])))"
    );
    // ^ Grafana's singlequote leaves the backslash: `'o\'brien\'` never ends. Hence hex.
    assert_eq!(
        expand(&format!("WHERE {filter} AND ({filter})"), all).unwrap(),
        "WHERE 1=1 AND (1=1)"
    );
    let nothing = Domain {
        all: false,
        values: &[],
    };
    assert_eq!(expand(filter, nothing).unwrap(), "1=1");
    // Nested parentheses and a comma inside the condition; `${domain}` is a reference too.
    assert_eq!(
        expand(
            "$__conditionalAll(has([1, 2], x) AND y IN (${domain:singlequote}), ${domain})",
            some
        )
        .unwrap(),
        "has([1, 2], x) AND y IN ('6578616D706C652E636F6D','o\\'brien\\')"
    );
    assert_eq!(
        conditional_alls("a $__conditionalAll(f(x, y), $domain) b $__conditionalAll(z, $v)"),
        [
            ("f(x, y)".to_owned(), " $domain".to_owned()),
            ("z".to_owned(), " $v".to_owned())
        ]
    );
    assert_eq!(variable_name(" ${domain:singlequote}"), None);
    assert_eq!(variable_name("$domain "), Some("domain"));
    assert_eq!(
        expand("toDate($__toTime) - toDate($__fromTime)", some).unwrap(),
        "toDate(toDateTime(1900000000)) - toDate(toDateTime(1500000000))"
    );
    assert!(expand("$__timeInterval(day)", some).is_err());
    assert!(expand("policy_domain IN ($domain)", some).is_err());
    assert!(expand("policy_domain IN (${domain})", all).is_err());
    assert!(expand("$__conditionalAll(x, y, $domain)", some).is_err());
    assert!(domain_filter_problems(filter, false).is_empty());
    assert_eq!(
        domain_filter_problems("WHERE policy_domain IN (${domain:singlequote})", false).len(),
        1
    );
    assert_eq!(
        domain_filter_problems(
            "$__conditionalAll(policy_domain IN (${domain:singlequote}), $domain)",
            false
        )
        .len(),
        1
    );
    // The league table's owner and group read like `domain`; the one-domain dashboard's
    // single-value domain only as SINGLE_DOMAIN_FILTER, never in a $__conditionalAll.
    let owner =
        "$__conditionalAll(owner IN (SELECT unhex(arrayJoin([${owner:singlequote}]))), $owner)";
    assert!(domain_filter_problems(owner, false).is_empty());
    assert_eq!(
        expand_with(owner, all, &[("owner", "4F776E6572".to_owned())]).unwrap(),
        "owner IN (SELECT unhex(arrayJoin(['4F776E6572'])))"
    );
    assert_eq!(expand(owner, all).unwrap(), "1=1");
    let single = format!("WHERE domain IN (SELECT {SINGLE_DOMAIN_FILTER})");
    assert!(domain_filter_problems(&single, true).is_empty());
    assert_eq!(domain_filter_problems(&single, false).len(), 1);
    assert_eq!(
        domain_filter_problems("WHERE domain = unhex(${domain:singlequote})", true).len(),
        1
    );
    assert_eq!(domain_filter_problems(filter, true).len(), 1);
    assert_eq!(hex("a'\\"), "61275C");
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

// ---- The ClickHouse users of deploy/compose (for ClickHouse 25.8) ----

/// An element of a parsed XML file.
#[derive(Debug, Default)]
struct Element {
    name: String,
    attributes: Vec<(String, String)>,
    text: String,
    children: Vec<Element>,
}

impl Element {
    fn child(&self, name: &str) -> Option<&Element> {
        self.children.iter().find(|c| c.name == name)
    }

    fn at(&self, path: &[&str]) -> Option<&Element> {
        path.iter().try_fold(self, |e, name| e.child(name))
    }

    /// The trimmed text at `path`, "" if there is none.
    fn text_at(&self, path: &[&str]) -> &str {
        self.at(path).map_or("", |e| e.text.trim())
    }

    fn attribute(&self, name: &str) -> Option<&str> {
        self.attributes
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    /// The texts of the children named `name`.
    fn texts(&self, name: &str) -> Vec<&str> {
        self.children
            .iter()
            .filter(|c| c.name == name)
            .map(|c| c.text.trim())
            .collect()
    }
}

/// Parses a whole XML document (well-formed, one root element) into its root element.
fn parse_xml(text: &str) -> Result<Element, String> {
    use quick_xml::events::{BytesStart, Event};
    let open = |e: &BytesStart| -> Result<Element, String> {
        let mut attributes = Vec::new();
        for a in e.attributes() {
            let a = a.map_err(|e| e.to_string())?;
            let value = a.unescape_value().map_err(|e| e.to_string())?;
            attributes.push((
                String::from_utf8_lossy(a.key.as_ref()).into_owned(),
                value.into_owned(),
            ));
        }
        Ok(Element {
            name: String::from_utf8_lossy(e.name().as_ref()).into_owned(),
            attributes,
            ..Element::default()
        })
    };
    let mut reader = quick_xml::Reader::from_str(text);
    let mut stack = vec![Element::default()];
    loop {
        let event = reader
            .read_event()
            .map_err(|e| format!("at byte {}: {e}", reader.buffer_position()))?;
        match event {
            Event::Start(e) => stack.push(open(&e)?),
            Event::Empty(e) => {
                let element = open(&e)?;
                stack.last_mut().unwrap().children.push(element);
            }
            Event::End(_) => {
                let element = stack.pop().unwrap();
                stack
                    .last_mut()
                    .ok_or("unbalanced end tag")?
                    .children
                    .push(element);
            }
            Event::Text(t) => {
                let text = t.unescape().map_err(|e| e.to_string())?;
                stack.last_mut().unwrap().text.push_str(&text);
            }
            Event::CData(t) => {
                let text = String::from_utf8_lossy(&t).into_owned();
                stack.last_mut().unwrap().text.push_str(&text);
            }
            Event::Eof => break,
            _ => {}
        }
    }
    let mut document = stack.pop().ok_or("no document")?;
    if !stack.is_empty() || document.children.len() != 1 {
        return Err("not one root element, or an element left open".into());
    }
    Ok(document.children.remove(0))
}

fn compose_file(name: &str) -> (String, Result<Element, String>) {
    let path = common::repo_root().join("deploy/compose").join(name);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{name}: {e}"));
    let root = parse_xml(&text);
    (text, root)
}

/// The privileges and the target of `GRANT a, b(c, d) ON target`.
fn parse_grant(query: &str) -> Option<(Vec<String>, String)> {
    let rest = query.trim().strip_prefix("GRANT ")?;
    let (privileges, target) = rest.rsplit_once(" ON ")?;
    let mut list = Vec::new();
    let mut depth = 0;
    let mut item = String::new();
    for c in privileges.chars() {
        match c {
            '(' => depth += 1,
            ')' => depth -= 1,
            ',' if depth == 0 => {
                list.push(item.trim().to_owned());
                item.clear();
                continue;
            }
            _ => {}
        }
        item.push(c);
    }
    list.push(item.trim().to_owned());
    Some((list, target.trim().to_owned()))
}

/// What ClickHouse 18.16 (no XML grants, no constraints) can run of the shipped users:
/// each user (named `{prefix}{name}`, password `password`, loopback only) with its profile
/// (the settings 18.16 knows; `constraints` left out) and, for its grants, the databases
/// they name (`dmarc` becomes `database`; `system` is open to everyone on 18.16) as
/// `allow_databases`. A grant on anything else is an error.
fn users_for_18_16(root: &Element, database: &str, prefix: &str) -> Result<String, String> {
    let users = root.child("users").ok_or("no <users>")?;
    let mut profiles = String::new();
    let mut out = String::new();
    for user in users.children.iter().filter(|u| u.name != "default") {
        let mut profile = user.text_at(&["profile"]).to_owned();
        if profile != "default" {
            let settings = root
                .at(&["profiles", &profile])
                .ok_or(format!("no profile {profile}"))?;
            profile = format!("{prefix}{profile}");
            let _ = write!(profiles, "<{profile}>");
            for s in settings.children.iter().filter(|s| s.name != "constraints") {
                let _ = write!(profiles, "<{0}>{1}</{0}>", s.name, s.text.trim());
            }
            let _ = write!(profiles, "</{profile}>");
        }
        let mut databases = BTreeSet::new();
        for query in user
            .child("grants")
            .map(|g| g.texts("query"))
            .unwrap_or_default()
        {
            let (_, target) = parse_grant(query).ok_or(format!("grant {query:?}"))?;
            match target.split_once('.') {
                Some(("dmarc", _)) => databases.insert(database.to_owned()),
                Some(("system", _)) => false,
                _ => return Err(format!("{}: grant on {target}", user.name)),
            };
        }
        let _ = write!(
            out,
            "<{prefix}{0}><password>password</password><networks><ip>127.0.0.1</ip><ip>::1</ip>\
             </networks><profile>{profile}</profile><quota>{1}</quota><allow_databases>{2}\
             </allow_databases></{prefix}{0}>",
            user.name,
            user.text_at(&["quota"]),
            databases
                .iter()
                .map(|d| format!("<database>{d}</database>"))
                .collect::<String>()
        );
    }
    Ok(format!(
        "<?xml version=\"1.0\"?>\n<yandex><profiles>{profiles}</profiles><users>{out}</users></yandex>\n"
    ))
}

/// Checks of the shipped users that no server here can run: what makes them narrow on
/// ClickHouse 25.8 (grants, constraints, the access control of config.d), and that the
/// files fit together (compose mounts them and sets their passwords; the data source's
/// timeout fits the constraint).
#[test]
fn compose_clickhouse_users_are_narrow() {
    let mut problems = Vec::new();
    let (_, users) = compose_file("clickhouse-users.xml");
    let root = users.unwrap_or_else(|e| panic!("clickhouse-users.xml: {e}"));
    let (_, access) = compose_file("clickhouse-access.xml");
    let access = access.unwrap_or_else(|e| panic!("clickhouse-access.xml: {e}"));
    let compose = std::fs::read_to_string(common::repo_root().join("deploy/compose.yaml")).unwrap();
    let datasource = std::fs::read_to_string(
        common::repo_root().join("deploy/grafana/provisioning/datasources/clickhouse.yaml"),
    )
    .unwrap();

    assert_eq!(root.name, "clickhouse");
    assert_eq!(access.name, "clickhouse");
    for flag in [
        "select_from_system_db_requires_grant",
        "select_from_information_schema_requires_grant",
        "settings_constraints_replace_previous",
    ] {
        if access.text_at(&["access_control_improvements", flag]) != "true" {
            problems.push(format!("clickhouse-access.xml: {flag} is not true"));
        }
    }
    for mount in [
        "./compose/clickhouse-users.xml:/etc/clickhouse-server/users.d/",
        "./compose/clickhouse-access.xml:/etc/clickhouse-server/config.d/",
    ] {
        if !compose.contains(mount) {
            problems.push(format!("compose.yaml does not mount {mount}"));
        }
    }

    let users = root.child("users").expect("<users>");
    let names: Vec<&str> = users.children.iter().map(|u| u.name.as_str()).collect();
    assert_eq!(names, ["default", "grafana", "dmarc_ingest"]);
    let default = users.child("default").unwrap();
    if default
        .at(&["networks"])
        .and_then(|n| n.attribute("replace"))
        != Some("replace")
        || default.at(&["networks"]).unwrap().texts("ip") != ["::1", "127.0.0.1"]
    {
        problems.push("default: not kept to the loopback addresses".into());
    }
    for user in users.children.iter().filter(|u| u.name != "default") {
        let mut bad = |what: String| problems.push(format!("{}: {what}", user.name));
        match user.child("password").and_then(|p| p.attribute("from_env")) {
            Some(var) if compose.contains(&format!("{var}: ${{{var}:?")) => {}
            other => bad(format!(
                "password from_env {other:?}, not required by compose.yaml"
            )),
        }
        // <grants> replace the default (everything); these would widen it again.
        for wide in [
            "access_management",
            "allow_databases",
            "databases",
            "allow_dictionaries",
        ] {
            if user.child(wide).is_some() {
                bad(format!("has <{wide}>"));
            }
        }
        if user.child("grants").is_none() {
            bad("no <grants>: it would have every privilege".into());
        }
    }

    // grafana: readonly = 1, SELECT on dmarc, and only max_execution_time changeable, in
    // bounds that hold what the plugin sends (queryTimeout + 5).
    let grafana = users.child("grafana").unwrap();
    let grants: Vec<&str> = grafana
        .child("grants")
        .map(|g| g.texts("query"))
        .unwrap_or_default();
    if grants != ["GRANT SELECT ON dmarc.*"] {
        problems.push(format!("grafana: grants {grants:?}"));
    }
    let profile = root
        .at(&["profiles", grafana.text_at(&["profile"])])
        .expect("grafana's profile");
    if profile.text_at(&["readonly"]) != "1" {
        problems.push("grafana: readonly is not 1".into());
    }
    let query_timeout: u64 = datasource
        .lines()
        .find_map(|l| l.trim().strip_prefix("queryTimeout:"))
        .and_then(|v| v.split('#').next()?.trim().parse().ok())
        .expect("queryTimeout in the data source");
    let constraints: Vec<&Element> = profile
        .child("constraints")
        .map(|c| c.children.iter().collect())
        .unwrap_or_default();
    match constraints[..] {
        [c] if c.name == "max_execution_time" => {
            let min: u64 = c.text_at(&["min"]).parse().unwrap_or(0);
            let max: u64 = c.text_at(&["max"]).parse().unwrap_or(0);
            if c.child("changeable_in_readonly").is_none() || min < 1 || max < query_timeout + 5 {
                problems.push(format!(
                    "grafana: max_execution_time must be changeable_in_readonly, from 1 (0 is \
                     no limit) up to at least queryTimeout + 5 = {}",
                    query_timeout + 5
                ));
            }
        }
        _ => problems.push("grafana: constraints other than max_execution_time".into()),
    }

    // dmarc_ingest: what schema apply, import and run need, on dmarc; system.parts' columns.
    let ingest = users.child("dmarc_ingest").unwrap();
    let mut privileges = BTreeSet::new();
    for query in ingest
        .child("grants")
        .map(|g| g.texts("query"))
        .unwrap_or_default()
    {
        match parse_grant(query) {
            Some((list, target)) if target == "dmarc.*" => privileges.extend(list),
            Some((list, target))
                if target == "system.parts"
                    && list == ["SELECT(database, table, partition, active)"] => {}
            _ => problems.push(format!("dmarc_ingest: grant {query:?}")),
        }
    }
    let wanted: BTreeSet<String> = [
        "CREATE DATABASE",
        "CREATE TABLE",
        "CREATE VIEW",
        "ALTER ADD COLUMN",
        "SELECT",
        "INSERT",
        "ALTER DELETE",
    ]
    .map(String::from)
    .into();
    if privileges != wanted {
        problems.push(format!(
            "dmarc_ingest: privileges on dmarc.* {privileges:?}, expected {wanted:?} \
             (change both on purpose)"
        ));
    }
    assert!(problems.is_empty(), "\n{}", problems.join("\n"));
}

/// The shipped users on the 18.16 server, as far as it understands them (see
/// [`users_for_18_16`]): the importer creates the schema and imports into its database
/// and reads no other; Grafana runs every dashboard (the quote domain selected too) with
/// `readonly = 1` and is refused writes, DDL, SET, table functions and other databases.
/// Not covered here (18.16 lacks them): the grants' privilege lists, the system tables'
/// grants and the changeable_in_readonly max_execution_time the plugin sends.
#[test]
fn compose_clickhouse_users_on_clickhouse_18_16() {
    const PREFIX: &str = "test_compose_";
    let (_, root) = compose_file("clickhouse-users.xml");
    let root = root.unwrap_or_else(|e| panic!("clickhouse-users.xml: {e}"));
    let db = TestDb::fresh("compose_users");
    let other = format!("{}_other", db.database);
    for sql in [
        format!("DROP DATABASE IF EXISTS {}", db.database),
        format!("DROP DATABASE IF EXISTS {other}"),
        format!("CREATE DATABASE {other}"),
        format!("CREATE TABLE {other}.secret (x UInt8) ENGINE = Memory"),
        format!("INSERT INTO {other}.secret VALUES (1)"),
    ] {
        db.sql(&sql);
    }

    /// Removes the users file again, whatever happens.
    struct Remove(PathBuf);
    impl Drop for Remove {
        fn drop(&mut self) {
            let _ = std::fs::remove_file(&self.0);
        }
    }
    let users_d = common::clickhouse::shared_users_d();
    std::fs::create_dir_all(&users_d).unwrap();
    let file = Remove(users_d.join("test-compose-users.xml"));
    let xml = users_for_18_16(&root, &db.database, PREFIX).unwrap();
    std::fs::write(&file.0, xml).unwrap();
    let url = |user: &str| format!("{}/?user={PREFIX}{user}&password=password", db.url);
    let (grafana, ingest) = (url("grafana"), url("dmarc_ingest"));
    let started = std::time::Instant::now();
    while [&grafana, &ingest]
        .iter()
        .any(|u| run_at(u, "SELECT 1").is_err())
    {
        assert!(
            started.elapsed().as_secs() < 30,
            "the server did not load {}: {:?}",
            file.0.display(),
            run_at(&grafana, "SELECT 1")
        );
        std::thread::sleep(std::time::Duration::from_millis(200));
    }

    // The importer, as dmarc_ingest: schema apply and import (a broken file too, for the
    // `failures` panels); no other database.
    let reports = tempfile::tempdir().unwrap();
    write_recent_reports(reports.path());
    std::fs::write(
        reports.path().join("broken.xml"),
        "<feedback><report_metadata>",
    )
    .unwrap();
    let as_ingest = [
        (
            "DMARC_INGEST_CLICKHOUSE_USER",
            format!("{PREFIX}dmarc_ingest"),
        ),
        ("DMARC_INGEST_CLICKHOUSE_PASSWORD", "password".to_owned()),
    ];
    let out = db
        .command(&["schema", "apply"])
        .envs(as_ingest.clone())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "schema apply: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let dir = reports.path().display().to_string();
    let out = db
        .command(&["import", &dir])
        .envs(as_ingest.clone())
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(1),
        "import: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        db.number("SELECT count() FROM {database}.reports"),
        RECENT_REPORTS
    );
    load_generated_domains(&db);
    let reports = db.number("SELECT count() FROM {database}.reports");
    // The importer names the sources too (it writes source_names).
    common::dns::shared_dns();
    let out = db
        .command(&["enrich"])
        .envs(as_ingest.clone())
        .env("DMARC_INGEST_DNS_TIMEOUT_MS", "300")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "enrich: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut problems = Vec::new();
    let secret = format!("SELECT x FROM {other}.secret");
    match run_at(&ingest, &secret) {
        Err(e) if e.contains("Code: 291") => {}
        answer => problems.push(format!("dmarc_ingest reads {other}: {answer:?}")),
    }

    // Grafana: every dashboard, read-only.
    let ran = run_dashboards(&grafana, &db.database, &mut problems);
    if ran < 140 {
        problems.push(format!("only {ran} dashboard queries ran"));
    }
    let d = &db.database;
    for (sql, code) in [
        (
            format!("INSERT INTO {d}.ingest_log (source) VALUES ('x')"),
            164,
        ),
        (format!("CREATE TABLE {d}.x (x UInt8) ENGINE = Memory"), 164),
        (format!("DROP TABLE {d}.reports"), 164),
        (format!("ALTER TABLE {d}.reports DELETE WHERE 1"), 164),
        ("SET max_memory_usage = 1".to_owned(), 164),
        ("SELECT * FROM numbers(1)".to_owned(), 164),
        (secret, 291),
    ] {
        let out = Command::new("curl")
            .args(["-sS", "--fail-with-body", "--data-binary", &sql, &grafana])
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        if out.status.success() || !text.contains(&format!("Code: {code}")) {
            problems.push(format!(
                "grafana: {sql}: not refused with code {code}: {text}"
            ));
        }
    }
    assert_eq!(db.number("SELECT count() FROM {database}.reports"), reports);
    db.sql(&format!("DROP DATABASE IF EXISTS {other}"));
    assert!(problems.is_empty(), "\n{}", problems.join("\n"));
}
