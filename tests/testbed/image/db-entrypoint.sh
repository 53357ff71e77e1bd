#!/bin/sh
# The testbed's `db` service: PostgreSQL 15 set up the way supabase/postgres does it.
#
# On an empty data directory (the bind mount ./volumes/db/data) it runs initdb, then,
# like supabase/postgres's migrate.sh: the roles (db-init.sql, as supabase_admin), the
# project's init-scripts/*.sql (as postgres), supabase_admin's password from PGPASSWORD,
# and the project's migrations/*.sql (as supabase_admin). On a non-empty data directory
# it only starts the server: later .env changes never reach the passwords.
#
# Password (scram) logins over TCP on 127.0.0.1:$POSTGRES_PORT; trust on the unix socket
# inside the container, the recovery path Supabase's image also has.
# Usage (compose `command`): testbed-db postgres [-c name=value ...]
set -eu

PGDATA=${PGDATA:-/var/lib/postgresql/data}
PORT=${POSTGRES_PORT:-5432}
SOCKETS=/var/run/postgresql
INITDB_D=/docker-entrypoint-initdb.d
export PGDATA POSTGRES_USER="${POSTGRES_USER:-supabase_admin}"

if [ "$(id -u)" = 0 ]; then
    mkdir -p "$PGDATA" "$SOCKETS"
    chown postgres:postgres "$SOCKETS"
    [ "$(stat -c %U "$PGDATA")" = postgres ] || chown -R postgres:postgres "$PGDATA"
    chmod 700 "$PGDATA"
    exec setpriv --reuid=postgres --regid=postgres --init-groups "$0" "$@"
fi

run_sql() { # user file
    psql -X -q -v ON_ERROR_STOP=1 -h "$SOCKETS" -p "$PORT" -U "$1" -d postgres -f "$2"
}

if [ ! -s "$PGDATA/PG_VERSION" ]; then
    echo "testbed-db: initialising a new database in $PGDATA"
    initdb -D "$PGDATA" -U "$POSTGRES_USER" -E UTF8 --no-locale \
        --auth-local=trust --auth-host=scram-sha-256 >/dev/null
    pg_ctl -D "$PGDATA" -w -o "-c listen_addresses='' -p $PORT -k $SOCKETS" start >/dev/null
    run_sql "$POSTGRES_USER" /opt/testbed/db-init.sql
    for f in "$INITDB_D"/init-scripts/*.sql; do
        if [ -f "$f" ]; then run_sql postgres "$f"; fi
    done
    printf '%s\n' '\set pgpass `echo "$PGPASSWORD"`' \
        "ALTER USER $POSTGRES_USER WITH PASSWORD :'pgpass';" | run_sql postgres /dev/stdin
    for f in "$INITDB_D"/migrations/*.sql; do
        if [ -f "$f" ]; then run_sql "$POSTGRES_USER" "$f"; fi
    done
    pg_ctl -D "$PGDATA" -w -m fast stop >/dev/null
    echo "testbed-db: initialised"
fi

# Docker stops containers with SIGTERM; PostgreSQL's fast shutdown is SIGINT.
"$@" -p "$PORT" -k "$SOCKETS" -c listen_addresses=127.0.0.1 &
pid=$!
trap 'kill -INT "$pid" 2>/dev/null' TERM INT
status=0
while :; do
    wait "$pid" && status=0 || status=$?
    kill -0 "$pid" 2>/dev/null || break
done
exit "$status"
