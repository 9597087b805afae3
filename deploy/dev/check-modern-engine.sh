#!/usr/bin/env bash
# Runs SQL against a current ClickHouse engine (chDB, in-process, from PyPI's
# chdb-core) so that nothing that only works on the 18.16 dev server slips in.
#
#   check-modern-engine.sh [-v] [FILE...]
#
# FILEs are .sql (statements separated by ';') or .md (```sql fenced blocks).
# Without FILEs: schema/*.sql in name order, then *.sql and *.md under docs/,
# then *.sql under deploy/grafana/ (missing directories are skipped).
# `{database}` in statements becomes `dmarc`. All files run in one session, so
# queries see the tables the migrations made. Stops at the first error.
#
# chdb-core is installed once into $DMARC_STATE_DIR/chdb-venv (default
# <repo>/.state/chdb-venv, ~180 MB download). DMARC_CHDB_VERSION pins it.
set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
STATE=${DMARC_STATE_DIR:-$REPO/.state}
VENV=$STATE/chdb-venv
CHDB_VERSION=${DMARC_CHDB_VERSION:-26.9.0}
PYTHON=${DMARC_PYTHON:-python3}

# Installed version of chdb-core in the venv (without importing the big library).
installed_version() {
    "$VENV/bin/python" -c 'import importlib.metadata as m; print(m.version("chdb-core"))' 2>/dev/null
}

if [[ $(installed_version || true) != "$CHDB_VERSION" ]]; then
    echo "check-modern-engine: installing chdb-core $CHDB_VERSION into $VENV (one-off, ~180 MB)" >&2
    mkdir -p "$STATE"
    [[ -x $VENV/bin/python ]] || "$PYTHON" -m venv "$VENV" || {
        echo "check-modern-engine: '$PYTHON -m venv' failed (Debian: apt-get install -y python3-venv)" >&2
        exit 1
    }
    "$VENV/bin/python" -m pip install -q --disable-pip-version-check "chdb-core==$CHDB_VERSION" >&2
fi

exec "$VENV/bin/python" "$REPO/deploy/dev/check_modern_engine.py" --repo "$REPO" "$@"
