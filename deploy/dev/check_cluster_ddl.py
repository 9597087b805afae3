#!/usr/bin/env python3
"""Check the cluster schema (schema/cluster/) on the current ClickHouse engine (chDB).

Called by check-cluster-ddl.sh, which provides a venv with chdb-core. No cluster, no
Keeper and no network are needed; what can be checked without them is checked:

1. Layout: schema/cluster/ has a migration for every migration of schema/ (same file
   names) and a query for every query of schema/queries/, so the store can switch
   directories.
2. Rules (read from the SQL): every DDL runs ON CLUSTER '{cluster}'; storage tables are
   Replicated*MergeTree('/clickhouse/tables/{shard}/{database}/<name>', '{replica}') named
   <name>_local, each with a Distributed <name> over it on '{cluster}'; records, reports
   and their staging tables are sharded by the report identity; materialized views read
   and write _local tables; the queries read Distributed tables only, with GLOBAL IN.
3. Parsing: every statement through formatQuery(), with {database} -> dmarc,
   {cluster} -> c, {batch} -> a UUID; {shard} and {replica} stay in the Keeper paths.
4. The DDL as written (less ON CLUSTER, which needs a running cluster) on chDB with an
   in-memory Keeper and a one-shard cluster `c` whose only replica is this process: the
   Replicated engines, their macros, TTLs and Distributed tables are created for real,
   the shipped queries run, and every table and column is compared with what schema/
   (the single-server migrations) creates.
5. The exactly-once publish, played through the Distributed tables (Replicated engines
   swapped for their plain twins, as inserts need a live Keeper): two batches, a report
   delivered twice, a record staged twice, a publish re-run; totals, read-back and the
   rollups fed by the views on the _local tables must come out exact.

Out: one line per check; on failure the statement and the engine's message, exit 1.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from check_modern_engine import PLACEHOLDERS, Statement, shared_staging, split_sql  # noqa: E402 (after the path)

DATABASE = "dmarc"
SINGLE_DATABASE = "single"
# The settings the store sends with the publish on a current server (26.x knows them all;
# ingest/src/store/server.rs, whose test checks this list against its own, for a cluster
# of one replica per shard).
PUBLISH_SETTINGS = (
    "async_insert = 0",
    "distributed_foreground_insert = 1",
    "min_insert_block_size_rows = 1099511627776",
    "min_insert_block_size_bytes = 1099511627776",
    "min_insert_block_size_rows_for_materialized_views = 1099511627776",
    "min_insert_block_size_bytes_for_materialized_views = 1099511627776",
    "max_insert_threads = 1",
    "parallel_distributed_insert_select = 0",
    "enable_parallel_replicas = 0",
    "allow_experimental_parallel_reading_from_replicas = 0",
)  # where phase 4 applies schema/*.sql to compare with
CLUSTER = "c"
REPORT_KEY = "cityHash64(policy_domain, toUInt32(date_begin), org_name, report_id)"
# Tables whose rows must stay with their report on one shard.
REPORT_TABLES = {"records", "reports", "records_staging", "reports_staging"}

# One shard, one replica: this process. is_local needs the replica's port to equal
# tcp_port; chDB listens on nothing, and prefer_localhost_replica (the default) makes the
# Distributed tables read and write the local tables without any connection. Port 1 is
# never a ClickHouse server, so a query that did try the network would fail, not wander.
CHDB_CONFIG = f"""<clickhouse>
  <tcp_port>1</tcp_port>
  <remote_servers>
    <{CLUSTER}>
      <shard>
        <internal_replication>true</internal_replication>
        <replica><host>127.0.0.1</host><port>1</port></replica>
      </shard>
    </{CLUSTER}>
  </remote_servers>
  <macros><shard>01</shard><replica>r1</replica><cluster>{CLUSTER}</cluster></macros>
  {{keeper}}
</clickhouse>
"""
TEST_KEEPER = "<zookeeper><implementation>testkeeper</implementation></zookeeper>"


def fail(msg: str) -> None:
    print(f"FAIL {msg}", file=sys.stderr)


def statements(path: Path) -> list[Statement]:
    return split_sql(path.read_text(encoding="utf-8"))


def substitute(sql: str, database: str = DATABASE) -> str:
    sql = shared_staging(sql).replace("{database}", database).replace("{cluster}", CLUSTER)
    for name, value in PLACEHOLDERS.items():
        sql = sql.replace(name, value)
    return sql


def strip_comments(sql: str) -> str:
    return "\n".join(line for line in sql.split("\n") if not line.lstrip().startswith("--"))


def norm(s: str) -> str:
    return re.sub(r"\s+", " ", s).strip()


ON_CLUSTER = re.compile(r"\s+ON\s+CLUSTER\s+'[^']*'", re.IGNORECASE)
REPLICATED = re.compile(r"Replicated(\w*MergeTree)\(\s*'[^']*'\s*,\s*'[^']*'\s*(?:,\s*)?")


def without_on_cluster(sql: str) -> str:
    return ON_CLUSTER.sub("", sql)


def unreplicated(sql: str) -> str:
    return REPLICATED.sub(r"\1(", sql)


# ---------------------------------------------------------------------------------------
# 1 and 2: layout and rules


CREATE_TABLE = re.compile(
    r"^CREATE TABLE IF NOT EXISTS \{database\}\.(?P<name>\w+) ON CLUSTER '\{cluster\}'", re.IGNORECASE
)
ENGINE_REPLICATED = re.compile(
    r"ENGINE = (?P<engine>Replicated\w*MergeTree)\('(?P<path>[^']*)', '(?P<replica>[^']*)'"
)
ENGINE_DISTRIBUTED = re.compile(
    r"ENGINE = Distributed\('(?P<cluster>[^']*)', '(?P<db>[^']*)', '(?P<table>[^']*)', (?P<key>.*)\)$"
)
MV = re.compile(
    r"^CREATE MATERIALIZED VIEW IF NOT EXISTS \{database\}\.\w+ ON CLUSTER '\{cluster\}' "
    r"TO \{database\}\.(?P<to>\w+) AS .* FROM \{database\}\.(?P<src>\w+)",
    re.IGNORECASE,
)


def check_layout(repo: Path) -> list[str]:
    errors = []
    single = sorted(p.name for p in (repo / "schema").glob("*.sql"))
    cluster = sorted(p.name for p in (repo / "schema" / "cluster").glob("*.sql"))
    if single != cluster:
        errors.append(f"schema/cluster/*.sql {cluster} do not mirror schema/*.sql {single}")
    single_q = sorted(p.name for p in (repo / "schema" / "queries").glob("*.sql"))
    cluster_q = sorted(p.name for p in (repo / "schema" / "cluster" / "queries").glob("*.sql"))
    if single_q != cluster_q:
        errors.append(
            f"schema/cluster/queries/*.sql {cluster_q} do not mirror schema/queries/*.sql {single_q}"
        )
    return errors


def check_migration_rules(path: Path) -> tuple[list[str], set[str], set[str]]:
    """Errors, the _local tables made, the Distributed tables made (with their targets)."""
    errors: list[str] = []
    local: set[str] = set()
    distributed: set[str] = set()
    for st in statements(path):
        sql = norm(strip_comments(st.sql))
        where = f"{path}:{st.line}"
        verb = sql.split(" ", 1)[0].upper()
        if verb in ("CREATE", "ALTER", "DROP", "RENAME", "TRUNCATE", "OPTIMIZE"):
            if not re.search(r"ON CLUSTER '\{cluster\}'", sql):
                errors.append(f"{where}: DDL without ON CLUSTER '{{cluster}}': {sql[:100]}")
                continue
        elif verb != "INSERT":
            errors.append(f"{where}: unexpected statement: {sql[:100]}")
            continue
        m = CREATE_TABLE.match(sql)
        if not m:
            mv = MV.match(sql)
            if mv and not (mv["to"].endswith("_local") and mv["src"].endswith("_local")):
                errors.append(
                    f"{where}: a materialized view must read and write _local tables "
                    f"(it fires on the shard that receives the insert): TO {mv['to']} FROM {mv['src']}"
                )
            if sql.upper().startswith("CREATE MATERIALIZED VIEW") and not mv:
                errors.append(f"{where}: materialized view not understood: {sql[:120]}")
            continue
        name = m["name"]
        rep = ENGINE_REPLICATED.search(sql)
        dist = ENGINE_DISTRIBUTED.search(sql)
        if rep:
            if not name.endswith("_local"):
                errors.append(f"{where}: replicated table {name} must be named <name>_local")
            want = f"/clickhouse/tables/{{shard}}/{{database}}/{name}"
            if rep["path"] != want:
                errors.append(f"{where}: {name}: Keeper path {rep['path']!r}, want {want!r}")
            if rep["replica"] != "{replica}":
                errors.append(f"{where}: {name}: replica name {rep['replica']!r}, want '{{replica}}'")
            local.add(name)
        elif dist:
            if name.endswith("_local"):
                errors.append(f"{where}: Distributed table {name} must not be named _local")
            if (dist["cluster"], dist["db"], dist["table"]) != ("{cluster}", "{database}", f"{name}_local"):
                errors.append(
                    f"{where}: {name} must be Distributed('{{cluster}}', '{{database}}', '{name}_local', ...)"
                )
            if name in REPORT_TABLES and norm(dist["key"]) != REPORT_KEY:
                errors.append(f"{where}: {name} must be sharded by {REPORT_KEY}, not {dist['key']}")
            distributed.add(name)
        else:
            errors.append(f"{where}: {name}: engine is neither Replicated*MergeTree nor Distributed")
    return errors, local, distributed


PLAIN_IN = re.compile(r"(?<!GLOBAL )(?<!GLOBAL NOT )\b(NOT )?IN \(", re.IGNORECASE)


def check_query_rules(path: Path) -> list[str]:
    errors = []
    for st in statements(path):
        sql = norm(strip_comments(st.sql))
        for m in PLAIN_IN.finditer(sql):
            errors.append(
                f"{path}:{st.line}: '{m.group(0)}' on Distributed tables must be GLOBAL "
                f"(…{sql[max(0, m.start() - 40):m.end() + 20]}…)"
            )
        for t in re.findall(r"\{database\}\.(\w+_local)\b", sql):
            errors.append(f"{path}:{st.line}: the store's queries go through the Distributed tables, not {t}")
    return errors


# ---------------------------------------------------------------------------------------
# 3: parsing


def sql_literal(s: str) -> str:
    return "'" + s.replace("\\", "\\\\").replace("'", "\\'") + "'"


# ---------------------------------------------------------------------------------------
# 4 and 5: the engine, each in a child process (chDB holds one engine per process, and a
# Keeper-backed one does not shut down cleanly: the child leaves with os._exit).


def connect(tmp: Path, keeper: bool):
    import chdb  # imported late: loading the engine takes a moment

    cfg = tmp / "config.xml"
    cfg.write_text(CHDB_CONFIG.replace("{keeper}", TEST_KEEPER if keeper else ""), encoding="utf-8")
    data = tmp / "data"
    data.mkdir()
    return chdb.connect(f"{data}?config-file={cfg}")


# Engines stay referenced until the child process leaves with os._exit: closing a
# Keeper-backed chDB connection hangs (or aborts) in its shutdown.
_ENGINES: list[Engine] = []


class Engine:
    def __init__(self, conn, verbose: bool):
        self.conn = conn
        self.verbose = verbose
        _ENGINES.append(self)

    def run(self, sql: str, where: str = "", fmt: str = "TSV") -> str:
        if self.verbose:
            print(f"-- {where}\n{sql};")
        try:
            return str(self.conn.query(sql, fmt))
        except RuntimeError as e:  # chdb raises ChdbError (a RuntimeError)
            raise RuntimeError(f"{where}\n--- statement ---\n{sql}\n--- error ---\n{e}") from None

    def rows(self, sql: str, where: str = "") -> list[list[str]]:
        out = self.run(sql, where, "TabSeparatedRaw").strip("\n")
        return [line.split("\t") for line in out.split("\n")] if out else []

    def value(self, sql: str, where: str = "") -> str:
        return self.run(sql, where).strip()


def plain(sql: str) -> str:
    """ON CLUSTER dropped, Replicated engines swapped for their plain twins."""
    return unreplicated(without_on_cluster(sql))


def apply_files(eng: Engine, files: list[Path], rewrite, database: str = DATABASE) -> int:
    n = 0
    for path in files:
        for st in statements(path):
            eng.run(rewrite(substitute(st.sql, database)), f"{path}:{st.line}")
            n += 1
    return n


def phase_replicated(repo: Path, tmp: Path, verbose: bool) -> list[str]:
    """The Replicated DDL as written (ON CLUSTER aside) on an in-memory Keeper.

    chDB never activates a Keeper-backed replica (it stays read-only), so what needs a
    live replica is left to the next phase: ALTERs of the _local tables, and the views and
    one-off copies of 003 that read the columns those ALTERs add.
    """
    eng = Engine(connect(tmp, keeper=True), verbose)
    migrations = sorted((repo / "schema" / "cluster").glob("*.sql"))
    ran = skipped = 0
    for _ in range(2):  # twice: every statement is idempotent
        ran = skipped = 0
        for path in migrations:
            for st in statements(path):
                sql = norm(strip_comments(st.sql))
                if re.match(r"ALTER TABLE \{database\}\.\w+_local ", sql) or sql.startswith(
                    ("CREATE MATERIALIZED VIEW", "INSERT")
                ):
                    skipped += 1
                    continue
                eng.run(without_on_cluster(substitute(st.sql)), f"{path}:{st.line}")
                ran += 1
    apply_files(eng, sorted((repo / "schema").glob("*.sql")), lambda s: s, database=SINGLE_DATABASE)

    errors = []
    engines = {
        (db, name): engine
        for db, name, engine in eng.rows(
            "SELECT database, name, engine FROM system.tables "
            f"WHERE database IN ('{DATABASE}', '{SINGLE_DATABASE}')"
        )
    }
    paths = dict(
        eng.rows(f"SELECT table, zookeeper_path FROM system.replicas WHERE database = '{DATABASE}'")
    )
    for (db, name), engine in sorted(engines.items()):
        if db != DATABASE or not name.endswith("_local"):
            continue
        single = engines.get((SINGLE_DATABASE, name.removesuffix("_local")))
        if engine != f"Replicated{single}":
            errors.append(f"{DATABASE}.{name}: engine {engine}, single server {single}")
        # The servers' macros were expanded into the Keeper path.
        if paths.get(name) != f"/clickhouse/tables/01/{DATABASE}/{name}":
            errors.append(f"{DATABASE}.{name}: Keeper path {paths.get(name)}")
    if not errors:
        print(
            f"ok   replicated DDL as written: {ran} statements on an in-memory Keeper "
            f"({len(paths)} replicated tables, macros expanded, engines match schema/); "
            f"{skipped} left to the next check (they need a live replica)"
        )
    return errors


def compare_with_single(eng: Engine) -> list[str]:
    """Every table of schema/ has its cluster twin: same columns in the same order, and
    for storage tables a Distributed table of the name over a <name>_local with the same
    columns, sort key and partition key."""
    errors = []
    tables = {
        (db, name): (engine, sorting_key, partition_key)
        for db, name, engine, sorting_key, partition_key in eng.rows(
            "SELECT database, name, engine, sorting_key, partition_key FROM system.tables "
            f"WHERE database IN ('{DATABASE}', '{SINGLE_DATABASE}')"
        )
    }
    columns: dict[tuple[str, str], list[tuple[str, str]]] = {}
    for db, table, name, typ in eng.rows(
        "SELECT database, table, name, type FROM system.columns "
        f"WHERE database IN ('{DATABASE}', '{SINGLE_DATABASE}') ORDER BY database, table, position"
    ):
        columns.setdefault((db, table), []).append((name, typ))
    for (db, name), (engine, sorting_key, partition_key) in sorted(tables.items()):
        if db != SINGLE_DATABASE:
            continue
        twin = tables.get((DATABASE, name))
        if twin is None:
            errors.append(f"{name}: in schema/ but not in schema/cluster/")
            continue
        if engine == "MaterializedView":
            continue
        if columns.get((DATABASE, name)) != columns.get((db, name)):
            errors.append(
                f"{DATABASE}.{name}: columns differ from the single-server table:\n"
                f"    cluster: {columns.get((DATABASE, name))}\n    single:  {columns.get((db, name))}"
            )
        if engine == "View":
            continue
        if twin[0] != "Distributed":
            errors.append(f"{DATABASE}.{name}: engine {twin[0]}, want Distributed")
        local = tables.get((DATABASE, f"{name}_local"))
        if local is None:
            errors.append(f"{DATABASE}.{name}_local: missing")
            continue
        if columns.get((DATABASE, f"{name}_local")) != columns.get((db, name)):
            errors.append(f"{DATABASE}.{name}_local: columns differ from the single-server table")
        if (local[1], local[2]) != (sorting_key, partition_key):
            errors.append(
                f"{DATABASE}.{name}_local: ORDER BY {local[1]!r} PARTITION BY {local[2]!r}; "
                f"single server: {sorting_key!r}, {partition_key!r}"
            )
    for db, name in tables:
        if db == DATABASE and (SINGLE_DATABASE, name.removesuffix("_local")) not in tables:
            errors.append(f"{DATABASE}.{name}: has no counterpart in schema/")
    return errors


def phase_publish(repo: Path, tmp: Path, verbose: bool) -> list[str]:
    """All of the DDL (plain engines underneath), compared with schema/, then the
    exactly-once publish through the Distributed tables."""
    eng = Engine(connect(tmp, keeper=False), verbose)
    migrations = sorted((repo / "schema" / "cluster").glob("*.sql"))
    qdir = repo / "schema" / "cluster" / "queries"
    n = apply_files(eng, migrations, plain)
    apply_files(eng, migrations, plain)  # twice: every statement is idempotent
    eng.run("SET insert_distributed_sync = 1")
    n += apply_files(eng, sorted(qdir.glob("*.sql")), lambda s: s)  # on empty tables
    apply_files(eng, sorted((repo / "schema").glob("*.sql")), lambda s: s, database=SINGLE_DATABASE)
    errors = compare_with_single(eng)
    if errors:
        return errors
    print(f"ok   all of the DDL and queries: {n} statements; tables, columns and keys match schema/")
    # What the store sends with the publish on a current server (ingest/src/store/
    # server.rs, `publish_settings`), on an engine left free to use several insert threads.
    eng.run("SET max_threads = 4")
    for setting in PUBLISH_SETTINGS:
        eng.run(f"SET {setting}")

    def query(name: str, batch: str) -> str:
        (st,) = statements(qdir / name)
        return st.sql.replace("{database}", DATABASE).replace("{batch}", f"toUUID('{batch}')")

    def stage(report: str, ingest_id: str, batch: str, counts: list[int], dup_first: bool = False) -> None:
        org, rid, domain, day = report.split("/")
        rows = [
            f"('{domain}', toDateTime('{day} 00:00:00', 'UTC'), toDateTime('{day} 23:59:59', 'UTC'), "
            f"'{org}', '{rid}', {i}, '192.0.2.{i + 1}', toFixedString(IPv6StringToNum('::ffff:192.0.2.{i + 1}'), 16), "
            f"{c}, 'none', 'pass', 'fail', '{domain}', '{domain}', 'pass', "
            f"toUUID('{ingest_id}'), now('UTC'))"
            for i, c in enumerate(counts)
        ]
        staged_ids.setdefault(batch, set()).add(ingest_id)
        if dup_first:
            rows.append(rows[0])  # a staging insert retried after its acknowledgement was lost
        eng.run(
            f"INSERT INTO {DATABASE}.records_staging (policy_domain, date_begin, date_end, org_name, "
            "report_id, record_index, source_ip, source_ip_v6, message_count, disposition, policy_dkim, "
            "policy_spf, header_from, sender_org, published_p, ingest_id, ingested_at) VALUES "
            + ", ".join(rows),
            f"stage {report}",
        )
        eng.run(
            f"INSERT INTO {DATABASE}.reports_staging (policy_domain, date_begin, date_end, org_name, "
            "report_id, record_count, message_count, ingest_id, ingested_at, batch_id) VALUES "
            f"('{domain}', toDateTime('{day} 00:00:00', 'UTC'), toDateTime('{day} 23:59:59', 'UTC'), "
            f"'{org}', '{rid}', {len(counts)}, {sum(counts)}, toUUID('{ingest_id}'), now('UTC'), "
            f"toUUID('{batch}'))",
            f"stage {report}",
        )

    staged_ids: dict[str, set[str]] = {}

    def publish(batch: str) -> set[str]:
        """The batch's ingest_ids that its publish (or an earlier run of it) stored."""
        eng.run(query("publish_records.sql", batch), f"publish_records.sql batch {batch}")
        eng.run(query("publish_reports.sql", batch), f"publish_reports.sql batch {batch}")
        stored = {r[0] for r in eng.rows(query("publish_outcome.sql", batch), "publish_outcome.sql")}
        return stored & staged_ids[batch]

    def totals() -> tuple[int, int, int]:
        (row,) = eng.rows(
            f"SELECT (SELECT count() FROM {DATABASE}.records), "
            f"(SELECT sum(message_count) FROM {DATABASE}.records), (SELECT count() FROM {DATABASE}.reports)"
        )
        return int(row[0]), int(row[1]), int(row[2])

    def expect(what: str, got, want) -> None:
        if got != want:
            errors.append(f"publish: {what}: got {got!r}, want {want!r}")

    b1, b2 = "11111111-1111-4111-8111-111111111111", "22222222-2222-4222-8222-222222222222"
    a1, bb, a2, c = (f"{n}{n}{n}{n}{n}{n}{n}{n}-0000-4000-8000-000000000000" for n in "abcd")
    stage("google.com/r-a/example.org/2025-03-01", a1, b1, [3, 5, 7], dup_first=True)
    stage("Mail.Ru/r-b/example.net/2025-03-01", bb, b1, [11, 13])
    expect("batch 1 published", publish(b1), {a1, bb})
    expect("after batch 1 (records, messages, reports)", totals(), (5, 39, 2))
    # The first report delivered again (a new import attempt), and a new one.
    stage("google.com/r-a/example.org/2025-03-01", a2, b2, [3, 5, 7])
    stage("yahoo.com/r-c/example.org/2025-03-02", c, b2, [17])
    expect("batch 2 published (the duplicate skipped)", publish(b2), {c})
    expect("after batch 2", totals(), (6, 56, 3))
    # A publish re-run (the importer crashed after it, or retried it): nothing changes.
    expect("batch 2 re-run publishes nothing new", publish(b2), {c})
    expect("batch 1 re-run publishes nothing new", publish(b1), {a1, bb})
    expect("after the re-runs", totals(), (6, 56, 3))
    # The views on the _local tables fed the rollups, exactly once.
    expect(
        "records_daily (messages, records)",
        eng.rows(f"SELECT sum(messages), sum(records) FROM {DATABASE}.records_daily"),
        [["56", "6"]],
    )
    expect(
        "reporter_daily (reports, messages)",
        eng.rows(f"SELECT sum(reports), sum(messages) FROM {DATABASE}.reporter_daily"),
        [["3", "56"]],
    )
    expect("stale staging partitions", eng.rows(query("stale_staging_partitions.sql", b1)), [])
    eng.run(
        f"INSERT INTO {DATABASE}.ingest_log (logged_at, source, outcome, reason_kind, reason) "
        "VALUES (now('UTC'), 'INBOX/7', 'failed', 'not_dmarc', 'no report'), "
        "(now('UTC'), 'INBOX/8', 'imported', '', '')"
    )
    expect("failures view", eng.value(f"SELECT count() FROM {DATABASE}.failures"), "1")
    # A profile that allows 4 insert threads and small blocks: a big report published
    # without the store's settings lands in several parts (a crash between them would
    # leave it truncated for good); with them, in one.
    def stage_big(rid: str, ingest_id: str, batch: str) -> None:
        stage(f"google.com/{rid}/example.com/2025-04-01", ingest_id, batch, [1] * 200)
        eng.run(
            f"INSERT INTO {DATABASE}.records_staging SELECT s.* REPLACE (toUInt32(n.number + 200) AS record_index) "
            f"FROM {DATABASE}.records_staging_local AS s, numbers(50000) AS n "
            f"WHERE s.ingest_id = toUUID('{ingest_id}') AND s.record_index = 0",
            "stage a 50,200-record report",
        )
        eng.run(
            f"ALTER TABLE {DATABASE}.reports_staging_local UPDATE record_count = 50200 "
            f"WHERE ingest_id = toUUID('{ingest_id}') SETTINGS mutations_sync = 1",
            "count the big report's records",
        )

    def parts_of(ingest_id: str) -> list[list[str]]:
        return eng.rows(
            f"SELECT count(), uniqExact(_part) FROM {DATABASE}.records_local WHERE ingest_id = toUUID('{ingest_id}')"
        )

    hostile_profile = "SET max_insert_threads = 4, max_block_size = 1000, min_insert_block_size_rows = 1000"
    # Parts are counted as inserted: a background merge could join the bare publish's
    # parts before they are counted, and the check would prove nothing.
    eng.run(f"SYSTEM STOP MERGES {DATABASE}.records_local", "stop merges of records_local")
    for name, with_store_settings in (("r-big-bare", False), ("r-big", True)):
        batch, ingest_id = str(uuid.uuid4()), str(uuid.uuid4())
        stage_big(name, ingest_id, batch)
        eng.run(hostile_profile)
        if with_store_settings:
            for setting in PUBLISH_SETTINGS:
                eng.run(f"SET {setting}")
        expect(f"{name} published", publish(batch), {ingest_id})
        rows, parts = parts_of(ingest_id)[0]
        expect(f"{name}: rows", rows, "50200")
        if with_store_settings:
            expect(f"{name}: parts with the store's settings", parts, "1")
        elif parts == "1":
            errors.append("publish: the hostile profile did not split a report: this check proves nothing")
    eng.run(f"SYSTEM START MERGES {DATABASE}.records_local", "start merges of records_local")
    if not errors:
        print("ok   publish through the Distributed tables: 2 batches, a redelivered report, a record "
              "staged twice and re-runs give exact totals, read-back and rollups; a 50,200-record "
              "report is one part with the store's settings under a 4-insert-thread profile")
    return errors


def child(phase: str, repo: Path, tmp: Path, verbose: bool) -> None:
    try:
        errors = (phase_replicated if phase == "replicated" else phase_publish)(repo, tmp, verbose)
    except RuntimeError as e:
        errors = [str(e)]
    for e in errors:
        fail(e)
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(1 if errors else 0)


# ---------------------------------------------------------------------------------------


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repo", type=Path, default=Path.cwd())
    ap.add_argument("-v", "--verbose", action="store_true", help="print each statement the engine runs")
    ap.add_argument("--phase", choices=["replicated", "publish"], help=argparse.SUPPRESS)
    ap.add_argument("--tmp", type=Path, help=argparse.SUPPRESS)
    args = ap.parse_args()
    repo = args.repo.resolve()
    if args.phase:
        child(args.phase, repo, args.tmp, args.verbose)

    cluster_dir = repo / "schema" / "cluster"
    migrations = sorted(cluster_dir.glob("*.sql"))
    queries = sorted((cluster_dir / "queries").glob("*.sql"))
    if not migrations:
        fail(f"no migrations in {cluster_dir}")
        return 1

    errors = check_layout(repo)
    local: set[str] = set()
    distributed: set[str] = set()
    for path in migrations:
        e, lo, di = check_migration_rules(path)
        errors += e
        local |= lo
        distributed |= di
    for name in sorted(local):
        if name.removesuffix("_local") not in distributed:
            errors.append(f"{name} has no Distributed table {name.removesuffix('_local')} over it")
    for path in queries:
        errors += check_query_rules(path)
    for e in errors:
        fail(e)
    if errors:
        return 1
    print(
        f"ok   rules: {len(migrations)} migrations and {len(queries)} queries mirror schema/; "
        f"{len(local)} replicated _local tables, each under a Distributed table; ON CLUSTER and GLOBAL IN everywhere"
    )

    from chdb import session  # imported late: loading the engine takes a moment

    tmp = Path(tempfile.mkdtemp(prefix="chdb-cluster-"))
    try:
        sess = session.Session(str(tmp / "parse"))
        try:
            version = str(sess.query("SELECT version()", "TSV")).strip()
            n = 0
            for path in migrations + queries:
                for st in statements(path):
                    try:
                        sess.query(f"SELECT formatQuery({sql_literal(substitute(st.sql))})", "TSV")
                    except RuntimeError as e:  # ChdbError
                        fail(f"{path}:{st.line}: does not parse\n--- statement ---\n{st.sql}\n--- error ---\n{e}")
                        return 1
                    n += 1
        finally:
            sess.close()
        print(f"ok   parse: {n} statements on ClickHouse {version} (formatQuery)")

        for phase in ("replicated", "publish"):
            phase_tmp = tmp / phase
            phase_tmp.mkdir()
            cmd = [sys.executable, __file__, "--repo", str(repo), "--phase", phase, "--tmp", str(phase_tmp)]
            if args.verbose:
                cmd.append("-v")
            if subprocess.run(cmd, check=False).returncode != 0:
                return 1
        print("all cluster checks ok")
        return 0
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
