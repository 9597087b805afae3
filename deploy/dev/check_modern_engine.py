#!/usr/bin/env python3
"""Run SQL files through chDB (current ClickHouse, in-process); stop at the first error.

Called by check-modern-engine.sh, which provides a venv with chdb-core.

In:  .sql files (';'-separated statements) and .md files (```sql fenced blocks).
     Without file arguments: <repo>/schema/*.sql (name order), then *.sql and *.md
     under docs/, then *.sql under deploy/grafana/; missing directories are skipped.
Out: one line per file; on error the file, line, statement and the engine's message,
     exit status 1. `{database}` is replaced by the database name (default dmarc).
"""

from __future__ import annotations

import argparse
import re
import shutil
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path


@dataclass
class Statement:
    line: int  # 1-based line in the source file where the statement starts
    sql: str


def split_sql(text: str, first_line: int = 1) -> list[Statement]:
    """Split on ';' outside quotes and comments; drop chunks that are only comments.

    Understands '...' strings (backslash escapes and '' doubling), "..." and `...`
    identifiers, -- line comments and /* */ block comments.
    """
    out: list[Statement] = []
    buf: list[str] = []
    has_code = False  # chunk has something besides whitespace/comments
    start_line = None
    line = first_line
    i, n = 0, len(text)

    def flush() -> None:
        nonlocal buf, has_code, start_line
        sql = "".join(buf).strip()
        if has_code and sql:
            out.append(Statement(start_line or first_line, sql))
        buf, has_code, start_line = [], False, None

    while i < n:
        c = text[i]
        if c == "-" and text.startswith("--", i):
            j = text.find("\n", i)
            j = n if j < 0 else j
            buf.append(text[i:j])
            i = j
            continue
        if c == "/" and text.startswith("/*", i):
            j = text.find("*/", i + 2)
            j = n if j < 0 else j + 2
            chunk = text[i:j]
            buf.append(chunk)
            line += chunk.count("\n")
            i = j
            continue
        if c in "'\"`":
            j = i + 1
            while j < n and text[j] != c:
                j += 2 if text[j] == "\\" else 1
            j = min(j + 1, n)
            chunk = text[i:j]
            if not has_code:
                has_code, start_line = True, line
            buf.append(chunk)
            line += chunk.count("\n")
            i = j
            continue
        if c == ";":
            flush()
            i += 1
            continue
        if c == "\n":
            line += 1
        elif not c.isspace() and not has_code:
            has_code, start_line = True, line
        buf.append(c)
        i += 1
    flush()
    return out


FENCE = re.compile(r"^(?P<indent> {0,3})(?P<fence>`{3,}|~{3,})\s*(?P<info>[^\n`]*)$")


def markdown_sql(text: str) -> list[Statement]:
    """Statements from fenced code blocks whose info string starts with 'sql'."""
    out: list[Statement] = []
    lines = text.split("\n")
    i = 0
    while i < len(lines):
        m = FENCE.match(lines[i])
        if not m:
            i += 1
            continue
        fence, info = m.group("fence"), m.group("info").strip().lower()
        body_start = i + 1
        j = body_start
        while j < len(lines):
            close = lines[j].strip()
            if close.startswith(fence[0] * len(fence)) and set(close) <= {fence[0]}:
                break
            j += 1
        if info.split(" ")[0].split("{")[0] == "sql":
            out.extend(split_sql("\n".join(lines[body_start:j]), first_line=body_start + 1))
        i = j + 1
    return out


# The store's queries name their publish batch as `{batch}`, their staging tables as
# `{records_staging}`/`{reports_staging}` (here the shared ones; a batch's session
# tables have the same columns), and the daemon's attempt lookups their mailbox and
# UIDs; these stand-ins make them runnable.
PLACEHOLDERS = {
    "{records_dedup}": "LIMIT 1 BY ingest_id, record_index",
    "{batch}": "toUUID('00000000-0000-0000-0000-000000000000')",
    "{mailbox}": "'reports@127.0.0.1/INBOX'",
    "{uid_validity}": "1",
    "{uid_min}": "1",
    "{uid_max}": "100",
    "{days}": "SELECT 'example.com', toDate('2025-03-01')",
    "{since}": "toDateTime('2025-01-01 00:00:00', 'UTC')",
    "{after}": "source_ip_v6 > toFixedString(unhex('00000000000000000000FFFFC0000201'), 16)",
    "{naming_version}": "'services:0 asn: country:'",
    "{ingested}": "ingested_at >= toDateTime(1700000000)",
    "{limit}": "10000",
    "{today}": "toDate('2025-03-01')",
    "{week_start}": "toDate('2025-02-24')",
    "{week_end}": "toDate('2025-03-02')",
    "{recent_days}": "2",
    "{history_days}": "30",
    "{max_seen}": "1000",
}


def shared_staging(sql: str) -> str:
    """`{records_staging}` -> `{database}.records_staging`, and the same for reports."""
    for table in ("records_staging", "reports_staging"):
        sql = sql.replace("{" + table + "}", "{database}." + table)
    return sql


def fill(sql: str, database: str) -> str:
    sql = shared_staging(sql).replace("{database}", database)
    for name, value in PLACEHOLDERS.items():
        sql = sql.replace(name, value)
    return sql


def default_files(repo: Path) -> list[Path]:
    files = sorted((repo / "schema").glob("*.sql"))
    # The queries the store runs (publish, lookups), after the migrations made the tables.
    files += sorted((repo / "schema" / "queries").glob("*.sql"))
    docs = repo / "docs"
    if docs.is_dir():
        files += sorted(p for p in docs.rglob("*") if p.suffix in (".sql", ".md") and p.is_file())
    grafana = repo / "deploy" / "grafana"
    if grafana.is_dir():
        files += sorted(p for p in grafana.rglob("*.sql") if p.is_file())
    return files


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("files", nargs="*", type=Path)
    ap.add_argument("--repo", type=Path, default=Path.cwd())
    ap.add_argument("--database", default="dmarc", help="replaces {database} (default: dmarc)")
    ap.add_argument("-v", "--verbose", action="store_true", help="print each statement and its result")
    args = ap.parse_args()

    files = args.files or default_files(args.repo)
    if not files:
        print("check-modern-engine: no SQL files found (schema/, docs/, deploy/grafana/)", file=sys.stderr)
        return 0
    missing = [str(p) for p in files if not p.is_file()]
    if missing:
        print(f"check-modern-engine: no such file: {' '.join(missing)}", file=sys.stderr)
        return 1

    from chdb import session  # imported late: loading the engine takes a moment

    tmp = tempfile.mkdtemp(prefix="chdb-check-")
    sess = session.Session(tmp)
    try:
        version = str(sess.query("SELECT version()", "TSV")).strip()
        print(f"chDB engine: ClickHouse {version}")
        total = 0
        for path in files:
            try:
                text = path.read_text(encoding="utf-8")
            except OSError as e:
                print(f"FAIL {path}: cannot read: {e}", file=sys.stderr)
                return 1
            stmts = markdown_sql(text) if path.suffix.lower() in (".md", ".markdown") else split_sql(text)
            for st in stmts:
                sql = fill(st.sql, args.database)
                if args.verbose:
                    print(f"-- {path}:{st.line}\n{sql};")
                try:
                    res = sess.query(sql, "PrettyCompactMonoBlock" if args.verbose else "TSV")
                except Exception as e:  # chdb raises ChdbError (a RuntimeError)
                    print(f"FAIL {path}:{st.line}\n--- statement ---\n{sql}\n--- error ---\n{e}", file=sys.stderr)
                    return 1
                if args.verbose:
                    shown = str(res).rstrip()
                    if shown:
                        print(shown)
            total += len(stmts)
            print(f"ok   {path} ({len(stmts)} statements)")
        print(f"all {len(files)} files ok, {total} statements")
        return 0
    finally:
        sess.close()
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
