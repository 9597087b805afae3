#!/usr/bin/env python3
"""Extract every query of the Grafana dashboards as plain SQL, for check-modern-engine.sh.

    extract_dashboard_sql.py OUT.sql [DASHBOARD.json ...]

In:  deploy/grafana/dashboards/*.json (or the files given): each panel target's
     `rawSql` and each query variable's `query`.
Out: OUT.sql: first the test data of ingest/tests/common/generated_domains.sql (an
     inventory of 10,000 generated domains with reports, DNS snapshots and status
     history), then one statement per query (';'-separated, each after a `--` line naming
     dashboard and panel), with the Grafana macros expanded the way the
     grafana-clickhouse-datasource plugin expands them, for a fixed time range; each panel
     twice, once per selection of the `domain` variable below (a single-value `domain`
     variable, as on the one-domain dashboard: once per domain of SINGLE_DOMAINS); then
     checks that fail (throwIf) unless the variables and the domain filters handle a stored
     policy_domain with quotes and a trailing backslash (they insert one row into
     dmarc.reports, so the file is for a scratch engine, as check-modern-engine.sh's). A
     dashboard with other variables (the source dashboard's `ip`, `network`, `service`, the
     league table's `owner` and `group`) has its panels written once more per variable,
     with that one set. Exits 1 (and writes nothing) if a query uses a macro or variable
     not listed below, so a new one is added here (and in ingest/tests/queries.rs) on
     purpose.

Expansion (the same as ingest/tests/queries.rs):
  $__conditionalAll(cond, $v) -> 1=1 for "All" (or nothing selected, or an empty
                            textbox), else cond; v is domain, ip, network, service, owner
                            or group
  ${domain:singlequote}  -> the selected values, each in '...' with ' escaped as \' (and
                            nothing else, as Grafana does); the values are hex:
                            hex('example.com'), hex('o'brien"s.example\')
  ${service:singlequote}, ${owner:singlequote}, ${group:singlequote}
                         -> the same, for the service, owner and group variables (hex)
  ${ip:percentencode}, ${network:percentencode}
                         -> the textbox's text, percent-encoded as Grafana's percentencode
                            does (only A-Z a-z 0-9 - _ . ~ and %XX: safe in '...'); the
                            panels read it with decodeURLComponent('...')
  $__timeFilter(col)     -> col >= toDateTime(1500000000) AND col <= toDateTime(1900000000)
  $__dateFilter(col)     -> col >= toDate('2017-07-14') AND col <= toDate('2030-03-17')
  $__fromTime, $__toTime -> toDateTime(1500000000), toDateTime(1900000000)
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path
from urllib.parse import quote

FROM_TS = 1_500_000_000  # 2017-07-14T02:40:00Z
TO_TS = 1_900_000_000  # 2030-03-17T17:46:40Z
FROM_DATE = "2017-07-14"
TO_DATE = "2030-03-17"
QUOTE_DOMAIN = "o'brien\"s.example\\"  # both quotes and a trailing backslash
# The domain variable's values (hex(policy_domain)), and the selections each panel is
# written with (None is "All", which lists every value).
VALUES = [d.encode().hex().upper() for d in (QUOTE_DOMAIN, "example.com")]
SELECTIONS: dict[str, list[str] | None] = {"All": None, "the quote domain and example.com": VALUES}
# A single-value `domain` variable (no "All"): one domain at a time; gen-00011.example is a
# generated domain with findings and a status history.
SINGLE_DOMAINS = [d.encode().hex().upper() for d in (QUOTE_DOMAIN, "example.com", "gen-00011.example")]
# The other variables (a dashboard with any of them is also written once per variable,
# with that one set and the domain "All"): the value each is set to, and how a panel
# reads it. The network text holds both quotes and a backslash: it must reach the SQL
# only percent-encoded. Owner and group: values of the generated inventory.
SOURCE_VARIABLES: dict[str, tuple[str, str]] = {
    "ip": ("192.0.2.1", "percentencode"),
    "network": (QUOTE_DOMAIN, "percentencode"),
    "service": (QUOTE_DOMAIN.encode().hex().upper(), "singlequote"),
    "owner": ("Owner 11".encode().hex().upper(), "singlequote"),
    "group": ("Schools".encode().hex().upper(), "singlequote"),
}

REPO = Path(__file__).resolve().parents[2]
DASHBOARDS = REPO / "deploy" / "grafana" / "dashboards"
GENERATED_DOMAINS = REPO / "ingest" / "tests" / "common" / "generated_domains.sql"
CONDITIONAL_ALL = "$__conditionalAll("


def macro_args(sql: str, open_at: int) -> tuple[list[str], int] | None:
    """The plugin's split of a macro's arguments (commas outside nested parentheses) and
    the index after its `)`; None if the parentheses do not close."""
    depth, start, args = 0, open_at + 1, []
    for i in range(open_at, len(sql)):
        c = sql[i]
        if c == "(":
            depth += 1
        elif c == ")":
            depth -= 1
        elif c == "," and depth == 1:
            args.append(sql[start:i])
            start = i + 1
        if depth == 0:
            args.append(sql[start:i])
            return args, i + 1
    return None


def variable_of(argument: str) -> str | None:
    """The variable a $__conditionalAll tests, as the plugin reads its second argument."""
    var = re.search(r"(?<=\$\{)\w+(?=\})|(?<=\$)\w+", argument.strip())
    return var[0] if var else None


def conditional_all(sql: str, values: list[str] | None, source: dict[str, str] | None = None) -> str:
    """The plugin's $__conditionalAll, from the last one back (applyConditionalAll).
    `source`: the source variables that are set (the others are empty or "All")."""
    while (at := sql.rfind(CONDITIONAL_ALL)) >= 0:
        parsed = macro_args(sql, at + len(CONDITIONAL_ALL) - 1)
        if parsed is None or len(parsed[0]) != 2:
            return sql
        (condition, variable), end = parsed
        var = variable_of(variable)
        if var == "domain":
            everything = not values
        elif var in SOURCE_VARIABLES:
            everything = var not in (source or {})
        else:
            everything = False
        sql = sql[:at] + ("1=1" if everything else condition) + sql[end:]
    return sql


def percentencode(text: str) -> str:
    """Grafana's percentencode (encodeURIComponent, and !'()* too)."""
    return quote(text, safe="-_.~")


def expand(sql: str, values: list[str] | None = None, source: dict[str, str] | None = None) -> str:
    """Expand the macros and variables the shipped dashboards use; raise on others.
    `values`: the selected values of `domain` (None: "All"); `source`: the source variables
    set (name -> value; the others are empty or "All")."""
    source = source or {}
    sql = conditional_all(sql, values, source)
    sql = re.sub(
        r"\$__timeFilter\(\s*([^()]+?)\s*\)",
        lambda m: f"{m[1]} >= toDateTime({FROM_TS}) AND {m[1]} <= toDateTime({TO_TS})",
        sql,
    )
    sql = re.sub(
        r"\$__dateFilter\(\s*([^()]+?)\s*\)",
        lambda m: f"{m[1]} >= toDate('{FROM_DATE}') AND {m[1]} <= toDate('{TO_DATE}')",
        sql,
    )
    sql = sql.replace("$__fromTime", f"toDateTime({FROM_TS})")
    sql = sql.replace("$__toTime", f"toDateTime({TO_TS})")
    listed = VALUES if values is None else values
    quoted = ",".join("'" + v.replace("'", "\\'") + "'" for v in listed)
    sql = sql.replace("${domain:singlequote}", quoted)
    for name, (_, fmt) in SOURCE_VARIABLES.items():
        value = source.get(name, "")
        if fmt == "percentencode":
            sql = sql.replace("${%s:percentencode}" % name, percentencode(value))
        else:
            sql = sql.replace("${%s:singlequote}" % name, "'" + value.replace("'", "\\'") + "'")
    left = re.search(r"\$\{?\w+", sql)
    if left:
        raise ValueError(f"unknown macro or variable {left[0]!r}")
    return sql


def queries(path: Path) -> list[tuple[str, str]]:
    """(label, raw SQL) of every query in one dashboard file."""
    dash = json.loads(path.read_text(encoding="utf-8"))
    out = []
    for var in dash.get("templating", {}).get("list", []):
        if var.get("type") == "query":
            q = var.get("query")
            q = q.get("rawSql") or q.get("query") if isinstance(q, dict) else q
            out.append((f"{path.name}: variable ${var['name']}", q))
    for panel in dash.get("panels", []):
        inner = panel.get("panels", []) if panel.get("type") == "row" else [panel]
        for p in inner:
            for t in p.get("targets", []):
                if t.get("rawSql"):
                    out.append((f"{path.name}: panel {p['id']} \"{p.get('title', '')}\" ({t.get('refId', '')})", t["rawSql"]))
    return out


def quote_domain_checks(variable_sqls: list[str], conditions: set[str]) -> list[str]:
    """Statements that fail (throwIf) unless each domain variable lists QUOTE_DOMAIN as its
    hex value with a label free of quotes and backslashes, each domain filter
    ($__conditionalAll condition) with it selected keeps that domain and no other, and the
    single-value variable's filter (unhex(arrayJoin([${domain:singlequote}]))) gives it
    back. They insert one row into dmarc.reports first: run them last, on a scratch
    engine."""
    literal = "'" + QUOTE_DOMAIN.replace("\\", "\\\\").replace("'", "\\'") + "'"
    label = QUOTE_DOMAIN.replace("'", "?").replace("\\", "?")
    out = [
        "INSERT INTO dmarc.reports (policy_domain, org_name, report_id)\n"
        f"VALUES ({literal}, 'extract_dashboard_sql', 'quote-domain-check')",
    ]
    for variable_sql in variable_sqls:
        out.append(
            f"SELECT throwIf(countIf(__value = '{VALUES[0]}' AND __text = '{label}') != 1,\n"
            "               'the domain variable does not list the quote domain as hex')\n"
            f"FROM ({variable_sql.strip().rstrip(';')})"
        )
    single = expand("SELECT unhex(arrayJoin([${domain:singlequote}])) AS d", VALUES[:1])
    out.append(
        f"SELECT throwIf(groupArray(d) != [{literal}],\n"
        "               'the single-value domain filter does not give back the quote domain')\n"
        f"FROM ({single})"
    )
    for condition in sorted(conditions):
        out.append(
            f"SELECT throwIf(groupUniqArray(policy_domain) != [{literal}],\n"
            "               'a domain filter does not keep exactly the quote domain')\n"
            f"FROM dmarc.reports WHERE {expand(condition, VALUES[:1])}"
        )
    return out


def main() -> int:
    if len(sys.argv) < 2 or sys.argv[1] in ("-h", "--help"):
        print(__doc__, file=sys.stderr)
        return 2
    out = Path(sys.argv[1])
    files = [Path(a) for a in sys.argv[2:]] or sorted(DASHBOARDS.glob("*.json"))
    chunks = [
        "-- Generated by deploy/dev/extract_dashboard_sql.py from the Grafana dashboards;\n"
        f"-- macros expanded for {FROM_DATE} .. {TO_DATE}, domain selections: {', '.join(SELECTIONS)}.\n"
    ]
    chunks.append(
        "-- The test data: ingest/tests/common/generated_domains.sql\n"
        + GENERATED_DOMAINS.read_text(encoding="utf-8")
    )
    count = 0
    variable_sqls, conditions = [], set()
    for path in files:
        dash = json.loads(path.read_text(encoding="utf-8"))
        names = {v.get("name") for v in dash.get("templating", {}).get("list", [])}
        domain_var = next((v for v in dash.get("templating", {}).get("list", []) if v.get("name") == "domain"), {})
        if domain_var and not domain_var.get("multi"):
            selections: dict[str, tuple[list[str] | None, dict[str, str]]] = {
                bytes.fromhex(v).decode(): ([v], {}) for v in SINGLE_DOMAINS
            }
        else:
            selections = {selected: (values, {}) for selected, values in SELECTIONS.items()}
        for name, (value, _) in SOURCE_VARIABLES.items():
            if name in names:
                selections[f"All, {name} set"] = (None, {name: value})
        for label, raw in queries(path):
            variable = " variable $" in label
            if label.endswith("variable $domain"):
                variable_sqls.append(raw)
            at = 0
            while (at := raw.find(CONDITIONAL_ALL, at)) >= 0:
                parsed = macro_args(raw, at + len(CONDITIONAL_ALL) - 1)
                if parsed is None:
                    break
                if len(parsed[0]) == 2 and variable_of(parsed[0][1]) == "domain":
                    conditions.add(parsed[0][0])
                at = parsed[1]
            for selected, (values, source) in selections.items():
                try:
                    sql = expand(raw, values, source)
                except ValueError as e:
                    print(f"extract_dashboard_sql: {label}: {e}", file=sys.stderr)
                    return 1
                which = "" if variable else f" [domain: {selected}]"
                chunks.append(f"-- {label}{which}\n{sql.strip().rstrip(';')};\n")
                count += 1
                if variable:
                    break
    if variable_sqls:
        chunks.append("-- Checks: the quote domain, selected, reaches exactly its rows.")
        for sql in quote_domain_checks(variable_sqls, conditions):
            chunks.append(f"{sql};\n")
            count += 1
    out.write_text("\n".join(chunks), encoding="utf-8")
    print(f"extract_dashboard_sql: {count} queries from {len(files)} dashboards -> {out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
