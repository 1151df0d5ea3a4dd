#!/usr/bin/env bash
# Usage: run.sh <VENV_DIR> <count>
# Creates the venv if missing (python3 -m venv + pip install -r requirements.txt),
# then runs bench_p1.py with it. DATABASE_URL or PGHOST/PGPORT/PGUSER/PGPASSWORD/
# PGDATABASE pass through from the environment. Extra arguments go to bench_p1.py.
set -euo pipefail

if [ "$#" -lt 2 ]; then
    echo "usage: $0 <VENV_DIR> <count> [bench_p1.py options]" >&2
    exit 2
fi
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
VENV="$1"
COUNT="$2"
shift 2

# (Re)install when the venv is new or requirements.txt changed since the last
# successful install.
STAMP="$VENV/.strata-requirements.sha256"
WANT="$(sha256sum "$HERE/requirements.txt" | cut -d' ' -f1)"
if [ ! -x "$VENV/bin/python" ]; then
    python3 -m venv "$VENV"
fi
if [ "$(cat "$STAMP" 2>/dev/null || true)" != "$WANT" ]; then
    "$VENV/bin/pip" install -q --disable-pip-version-check -r "$HERE/requirements.txt" >&2
    echo "$WANT" >"$STAMP"
fi

# Keep the checkout free of __pycache__ directories.
export PYTHONDONTWRITEBYTECODE=1
exec "$VENV/bin/python" "$HERE/bench_p1.py" --count "$COUNT" "$@"
