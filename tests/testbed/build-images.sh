#!/usr/bin/env bash
# Builds the testbed image: one Debian bookworm root file system with PostgreSQL 15
# and Python 3, made by mmdebstrap from this machine's own Debian mirror and imported
# into Docker (nothing is pulled from a registry). Idempotent: each stage is tagged
# with a hash of its inputs and skipped when that tag exists.
#
#   rotator-testbed-base:<hash>  the root file system (packages only; slow to build)
#   rotator-testbed:<hash>       base + standin.py and the db entrypoint (seconds)
#   rotator-testbed:latest       the image the testbed's compose file runs
#
# Environment: TESTBED_IMAGE (default rotator-testbed), TESTBED_DEBIAN_MIRRORS (apt
# source lines, one per line; default: the bookworm entries of /etc/apt/sources*).
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
IMAGE=${TESTBED_IMAGE:-rotator-testbed}
SUITE=bookworm
PACKAGES=postgresql-15,python3,python3-psycopg2,procps
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

# The base hash covers this script (package list, hooks) and the mirrors; the final
# hash adds the files baked into /opt/testbed.
BASE_HASH=$( { cat "${BASH_SOURCE[0]}"; echo "$MIRRORS"; } | sha256sum | cut -c1-12)
FINAL_HASH=$( { echo "$BASE_HASH"; cat "$HERE/standin.py" "$HERE"/image/*; } | sha256sum | cut -c1-12)
BASE=$IMAGE-base:$BASE_HASH
FINAL=$IMAGE:$FINAL_HASH

exists() { docker image inspect "$1" >/dev/null 2>&1; }

if exists "$FINAL"; then
    docker tag "$FINAL" "$IMAGE:latest"
    log "$FINAL is up to date ($(elapsed "$START"))"
    exit 0
fi

if ! exists "$BASE"; then
    log "building $BASE with mmdebstrap ($SUITE: $PACKAGES)"
    WORK=$(mktemp -d /tmp/rotator-testbed-build.XXXXXX)
    trap 'rm -rf "$WORK"' EXIT
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
        --customize-hook='ln -sf /opt/testbed/standin.py "$1/usr/local/bin/standin"' \
        --customize-hook='ln -sf /opt/testbed/db-entrypoint.sh "$1/usr/local/bin/testbed-db"' \
        --customize-hook='ln -sf /opt/testbed/probe.sh "$1/usr/local/bin/probe"' \
        --customize-hook='rm -rf "$1"/var/lib/apt/lists/* "$1"/var/cache/apt/*.bin "$1"/var/log/*' \
        "$SUITE" "$WORK/rootfs.tar" "${mirror_args[@]}"
    log "rootfs built ($(elapsed "$START")), $(du -h "$WORK/rootfs.tar" | cut -f1); importing"
    docker import \
        --change 'ENV PATH=/usr/lib/postgresql/15/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
        --change 'ENV LANG=C.UTF-8' \
        --change 'CMD ["standin", "--help"]' \
        "$WORK/rootfs.tar" "$BASE" >/dev/null
    rm -rf "$WORK"
    log "imported $BASE ($(elapsed "$START"))"
fi

log "adding the testbed programs: $FINAL"
CONTAINER=rotator-testbed-build-$$
docker create --network none --name "$CONTAINER" "$BASE" true >/dev/null
trap 'docker rm -f "$CONTAINER" >/dev/null 2>&1 || true' EXIT
tar -c --owner=0 --group=0 --mode=0755 -C "$HERE" standin.py -C "$HERE/image" . |
    docker cp - "$CONTAINER:/opt/testbed"
docker commit "$CONTAINER" "$FINAL" >/dev/null
docker tag "$FINAL" "$IMAGE:latest"
# Drop the tags of earlier builds (an image a container still uses stays).
{ docker images --format '{{.Repository}}:{{.Tag}}' "$IMAGE"
  docker images --format '{{.Repository}}:{{.Tag}}' "$IMAGE-base"; } |
    grep -vxF -e "$FINAL" -e "$BASE" -e "$IMAGE:latest" | xargs -r docker rmi >/dev/null 2>&1 || true
log "built $FINAL ($(docker image inspect -f '{{.Size}}' "$FINAL" | numfmt --to=iec)) in $(elapsed "$START")"
