#!/usr/bin/env bash
# Fills a folder with the GraphiQL assets Strata serves at / (default:
# assets/graphiql, which the binary embeds at build time). Only the npm
# registry is needed. To serve another copy without rebuilding, point
# STRATA_GRAPHIQL_DIR at the folder this script filled.
#
#   scripts/fetch-graphiql.sh [folder]
set -euo pipefail
GRAPHIQL_VERSION=3.8.3
REACT_VERSION=18.3.1
dest="${1:-$(dirname "$0")/../assets/graphiql}"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
mkdir -p "$dest"
(cd "$work" && npm pack --silent "graphiql@$GRAPHIQL_VERSION" "react@$REACT_VERSION" "react-dom@$REACT_VERSION" >/dev/null)
for tgz in "$work"/*.tgz; do
  mkdir -p "$work/x" && tar -xzf "$tgz" -C "$work/x"
  case "$(basename "$tgz")" in
    graphiql-*) cp "$work/x/package/graphiql.min.js" "$work/x/package/graphiql.min.css" "$dest/" ;;
    react-dom-*) cp "$work/x/package/umd/react-dom.production.min.js" "$dest/" ;;
    react-*) cp "$work/x/package/umd/react.production.min.js" "$dest/" ;;
  esac
  rm -rf "$work/x"
done
echo "GraphiQL $GRAPHIQL_VERSION and React $REACT_VERSION in $dest"
