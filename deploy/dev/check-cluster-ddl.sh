#!/usr/bin/env bash
# Checks the cluster schema (schema/cluster/: migrations and the store's queries) on the
# current ClickHouse engine (chDB, in-process, from PyPI's chdb-core), without a cluster:
# the layout mirrors schema/, the cluster rules hold (ON CLUSTER, Replicated *_local tables
# under Distributed ones, report-identity sharding, views on _local tables, GLOBAL IN),
# every statement parses, the DDL runs as written on an in-memory Keeper and matches the
# single-server tables column for column, and the exactly-once publish plays out exactly
# through the Distributed tables. See deploy/dev/check_cluster_ddl.py.
#
#   check-cluster-ddl.sh [-v]
#
# chdb-core is shared with check-modern-engine.sh: installed once into
# $DMARC_STATE_DIR/chdb-venv (default <repo>/.state/chdb-venv); DMARC_CHDB_VERSION pins it.
set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
STATE=${DMARC_STATE_DIR:-$REPO/.state}
VENV=$STATE/chdb-venv
CHDB_VERSION=${DMARC_CHDB_VERSION:-26.9.0}
PYTHON=${DMARC_PYTHON:-python3}

installed_version() {
    "$VENV/bin/python" -c 'import importlib.metadata as m; print(m.version("chdb-core"))' 2>/dev/null
}

if [[ $(installed_version || true) != "$CHDB_VERSION" ]]; then
    echo "check-cluster-ddl: installing chdb-core $CHDB_VERSION into $VENV (one-off, ~180 MB)" >&2
    mkdir -p "$STATE"
    [[ -x $VENV/bin/python ]] || "$PYTHON" -m venv "$VENV" || {
        echo "check-cluster-ddl: '$PYTHON -m venv' failed (Debian: apt-get install -y python3-venv)" >&2
        exit 1
    }
    "$VENV/bin/python" -m pip install -q --disable-pip-version-check "chdb-core==$CHDB_VERSION" >&2
fi

exec "$VENV/bin/python" "$REPO/deploy/dev/check_cluster_ddl.py" --repo "$REPO" "$@"
