#!/usr/bin/env bash
# A throwaway PostgreSQL server for the shared-study tests (tests/search_tests/test_postgres.py).
#
#   scripts/postgres.sh start   install Debian's postgresql if missing, start a cluster on
#                               127.0.0.1:$PORT with role "search" and database "studies"
#   scripts/postgres.sh url     print the connection URL (password included: for $(...) only)
#   scripts/postgres.sh stop    stop the cluster and delete its data
#
# The cluster lives in $SEARCH_PG_DIR (default /tmp/cifar-search-pg), listens on 127.0.0.1 only
# (port $SEARCH_PG_PORT, default 55432) and keeps its socket there too, so it never touches a
# system cluster. Run as root, the server runs as the postgres user. Both commands are idempotent.
set -euo pipefail

BASE=${SEARCH_PG_DIR:-/tmp/cifar-search-pg}
PORT=${SEARCH_PG_PORT:-55432}
DATA="$BASE/data"
LOG="$BASE/server.log"
ROLE=search
DB=studies
# A test-only password for a server that only 127.0.0.1 can reach and that `stop` deletes.
PASSWORD=search-secret

say() { echo "postgres.sh: $*" >&2; }

pg_bin() {
    # Debian keeps the server tools off PATH, under /usr/lib/postgresql/<major>/bin.
    local dir
    dir=$(printf '%s\n' /usr/lib/postgresql/*/bin | sort -V | tail -n 1)
    if [[ -n "$dir" && -x "$dir/initdb" ]]; then
        echo "$dir"
    elif command -v initdb >/dev/null 2>&1; then
        dirname "$(command -v initdb)"
    fi
}

install_postgres() {
    if [[ -n "$(pg_bin)" ]]; then
        return
    fi
    if [[ $(id -u) -ne 0 ]]; then
        say "PostgreSQL is not installed and installing it needs root: apt-get install postgresql"
        exit 1
    fi
    if ! apt-cache policy postgresql 2>/dev/null | grep -q 'Candidate: [0-9]'; then
        apt-get update -qq
    fi
    if ! apt-cache policy postgresql | grep -q 'Candidate: [0-9]'; then
        say "no postgresql package in the apt sources; install PostgreSQL by hand"
        exit 1
    fi
    say "installing postgresql (apt-get)"
    # policy-rc.d-less containers may try to start the packaged cluster; that is harmless here.
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null
    if [[ -z "$(pg_bin)" ]]; then
        say "postgresql installed but initdb was not found"
        exit 1
    fi
}

# Run a server tool as the cluster's owner: postgres when we are root (the server refuses root).
as_owner() {
    if [[ $(id -u) -eq 0 ]]; then
        (cd / && runuser -u postgres -- "$@")
    else
        "$@"
    fi
}

running() {
    [[ -f "$DATA/PG_VERSION" ]] && as_owner "$BIN/pg_ctl" status -D "$DATA" >/dev/null 2>&1
}

start() {
    install_postgres
    BIN=$(pg_bin)
    if [[ ! -f "$DATA/PG_VERSION" ]]; then
        rm -rf "$BASE"
        mkdir -p "$BASE"
        chmod 700 "$BASE"
        if [[ $(id -u) -eq 0 ]]; then
            chown postgres: "$BASE"
        fi
        # Local socket connections trust the owner (that is how the role is made below); TCP
        # needs a password. No password is set for the superuser.
        as_owner "$BIN/initdb" -D "$DATA" -U postgres --auth-local=trust \
            --auth-host=scram-sha-256 -E UTF8 --no-locale >/dev/null
        cat >>"$DATA/postgresql.conf" <<EOF
listen_addresses = '127.0.0.1'
port = $PORT
unix_socket_directories = '$BASE'
# Throwaway test data: speed over durability.
fsync = off
synchronous_commit = off
full_page_writes = off
max_connections = 200
EOF
    fi
    if ! running; then
        if ! as_owner "$BIN/pg_ctl" start -D "$DATA" -l "$LOG" -w -t 60 >/dev/null; then
            say "the server did not start; its log:"
            tail -n 20 "$LOG" >&2 || true
            exit 1
        fi
    fi
    # The password goes through stdin, never a command line (ps) or the server log.
    as_owner "$BIN/psql" -h "$BASE" -p "$PORT" -U postgres -d postgres -q -X \
        -v ON_ERROR_STOP=1 >/dev/null <<EOF
SELECT format('CREATE ROLE %I LOGIN', '$ROLE')
WHERE NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = '$ROLE') \gexec
ALTER ROLE $ROLE WITH LOGIN PASSWORD '$PASSWORD';
SELECT format('CREATE DATABASE %I OWNER %I', '$DB', '$ROLE')
WHERE NOT EXISTS (SELECT 1 FROM pg_database WHERE datname = '$DB') \gexec
EOF
    say "ready on 127.0.0.1:$PORT (database $DB, role $ROLE; URL: scripts/postgres.sh url)"
}

stop() {
    BIN=$(pg_bin)
    if [[ -n "$BIN" && -f "$DATA/PG_VERSION" ]] && running; then
        as_owner "$BIN/pg_ctl" stop -D "$DATA" -m fast -w >/dev/null
    fi
    rm -rf "$BASE"
    say "stopped; $BASE removed"
}

case "${1:-}" in
    start) start ;;
    stop) stop ;;
    url) echo "postgresql://$ROLE:$PASSWORD@127.0.0.1:$PORT/$DB" ;;
    *)
        echo "usage: $0 start|stop|url" >&2
        exit 2
        ;;
esac
