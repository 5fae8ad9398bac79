#!/usr/bin/env bash
# with_pg.sh: runs a command against a throwaway PostgreSQL server (tests/tools/pg.sh), with
# PARLEY_TEST_PG_URL set to its admin URL and PARLEY_TEST_STORE=pg, so tests/chat starts every
# parley on it; the server is stopped and removed when the command ends, whatever its outcome.
#   tests/tools/with_pg.sh node --test tests/chat/
set -euo pipefail
cd "$(dirname "$0")/../.."
out=$(tests/tools/pg.sh start)
dir=$(head -n 1 <<<"$out")
trap 'tests/tools/pg.sh stop "$dir"' EXIT
trap 'exit 130' INT TERM
export PARLEY_TEST_PG_URL
PARLEY_TEST_PG_URL=$(tail -n 1 <<<"$out")
export PARLEY_TEST_STORE=pg
"$@"
