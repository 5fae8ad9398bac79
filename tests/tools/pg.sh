#!/usr/bin/env bash
# pg.sh: starts and stops a throwaway PostgreSQL server for the tests (Debian's postgresql package).
#   tests/tools/pg.sh start        prints two lines: the server's directory, then a connection URL
#                                  for its `postgres` database (unix socket in that directory)
#   tests/tools/pg.sh stop DIR     stops the server of DIR at once and removes DIR
#   tests/tools/pg.sh halt DIR     stops the server of DIR at once, keeping its data
#   tests/tools/pg.sh resume DIR   starts a halted server again
#
# DESIGN: PostgreSQL refuses to run as root, so as root the server runs as the `postgres` system
# user the package creates (runuser), in a temporary directory that user owns; as anybody else it
# runs as the caller. It listens on a unix socket in its own directory only (listen_addresses is
# empty), so no TCP port is taken and several servers never collide. fsync is off: a test server
# never needs to survive a power loss, and the tests run faster.
set -euo pipefail

bin_dir() {
    local d
    for d in /usr/lib/postgresql/*/bin; do
        [ -x "$d/initdb" ] && { echo "$d"; return 0; }
    done
    echo "pg.sh: no initdb under /usr/lib/postgresql/*/bin (scripts/setup.sh --test installs postgresql)" >&2
    return 1
}

# as_owner CMD...: runs CMD as the server's owner.
as_owner() {
    if [ "$(id -u)" -eq 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi
}

start() {
    local bin dir port=5432
    bin=$(bin_dir)
    dir=$(mktemp -d /tmp/parley-pg-XXXXXX)
    chmod 0755 "$dir" # the socket must be reachable by the tests, whoever they run as
    [ "$(id -u)" -eq 0 ] && chown postgres: "$dir"
    if ! as_owner "$bin/initdb" -D "$dir/data" -U postgres -A trust -E UTF8 --locale=C.UTF-8 \
        >"$dir/initdb.log" 2>&1; then
        cat "$dir/initdb.log" >&2
        rm -rf "$dir"
        return 1
    fi
    if ! run_server "$bin" "$dir"; then
        cat "$dir/server.log" >&2 || true
        rm -rf "$dir"
        return 1
    fi
    echo "$dir"
    echo "postgresql:///postgres?host=$dir&port=$port&user=postgres"
}

# run_server BIN DIR: starts the server of DIR and waits until it accepts connections.
run_server() {
    local bin=$1 dir=$2 port=5432
    as_owner "$bin/pg_ctl" -D "$dir/data" -l "$dir/server.log" -w -t 60 \
        -o "-c listen_addresses='' -c unix_socket_directories='$dir' -p $port -c fsync=off
            -c max_connections=200" start >/dev/null 2>&1
}

# halt DIR / resume DIR: stops the server of DIR at once (as a crash would) keeping its data, and
# starts it again: the tests' "PostgreSQL unreachable for a while".
halt() {
    local bin dir=$1
    bin=$(bin_dir)
    case "$dir" in /tmp/parley-pg-*) ;; *) echo "pg.sh: not a test server: $dir" >&2; return 1 ;; esac
    as_owner "$bin/pg_ctl" -D "$dir/data" -m immediate -w stop >/dev/null 2>&1
}

resume() {
    local bin dir=$1
    bin=$(bin_dir)
    case "$dir" in /tmp/parley-pg-*) ;; *) echo "pg.sh: not a test server: $dir" >&2; return 1 ;; esac
    run_server "$bin" "$dir" || { cat "$dir/server.log" >&2; return 1; }
}

stop() {
    local bin dir=$1
    bin=$(bin_dir)
    case "$dir" in /tmp/parley-pg-*) ;; *) echo "pg.sh: not a test server: $dir" >&2; return 1 ;; esac
    [ -d "$dir/data" ] && as_owner "$bin/pg_ctl" -D "$dir/data" -m immediate -w stop >/dev/null 2>&1 || true
    rm -rf "$dir"
}

case "${1:-}" in
start) start ;;
stop) stop "${2:?pg.sh stop DIR}" ;;
halt) halt "${2:?pg.sh halt DIR}" ;;
resume) resume "${2:?pg.sh resume DIR}" ;;
*)
    echo "usage: pg.sh start | pg.sh stop DIR | pg.sh halt DIR | pg.sh resume DIR" >&2
    exit 2
    ;;
esac
