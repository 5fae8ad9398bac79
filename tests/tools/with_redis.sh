#!/usr/bin/env bash
# with_redis.sh: runs a command with a throwaway redis-server (loopback, a free port, no
# persistence), with PARLEY_TEST_BROKER=redis and PARLEY_TEST_REDIS_PORT set, so tests/chat
# starts every parley with --broker on it (each server on a DB of its own); the server is
# stopped when the command ends, whatever its outcome.
#   tests/tools/with_pg.sh tests/tools/with_redis.sh node --test tests/chat/
set -euo pipefail
cd "$(dirname "$0")/../.."
command -v redis-server >/dev/null || {
    echo "with_redis.sh: no redis-server (scripts/setup.sh --test installs it)" >&2
    exit 1
}
port= pid=
for _ in 1 2 3 4 5; do
    port=$(node -e "const s=require('net').createServer().listen(0,'127.0.0.1',()=>{console.log(s.address().port);s.close()})")
    redis-server --port "$port" --bind 127.0.0.1 --save '' --appendonly no --databases 16384 \
        >/dev/null 2>&1 &
    pid=$!
    for _ in $(seq 100); do
        [ "$(redis-cli -p "$port" ping 2>/dev/null)" = PONG ] && break
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.05
    done
    [ "$(redis-cli -p "$port" ping 2>/dev/null)" = PONG ] && break
    kill "$pid" 2>/dev/null || true
    pid=
done
[ -n "$pid" ] || { echo "with_redis.sh: redis-server did not start" >&2; exit 1; }
trap 'kill "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true' EXIT
trap 'exit 130' INT TERM
export PARLEY_TEST_BROKER=redis PARLEY_TEST_REDIS_PORT=$port
"$@"
