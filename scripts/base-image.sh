#!/usr/bin/env bash
# Offline stand-ins for the two public images the project uses, built from Debian packages only,
# for machines that reach a Debian mirror but no container registry (air-gapped, CI sandboxes).
#
#   scripts/base-image.sh python       -> python:3.11-slim from debootstrap (Debian bookworm, Python 3.11)
#   scripts/base-image.sh prometheus   -> $PROMETHEUS_IMAGE from Debian's prometheus package
#
# Each is tagged with the public image's name, so the Dockerfile and deploy/compose.yaml stay the same
# whether the real image was pulled or the stand-in built. Debian's mirror comes from DEBIAN_MIRROR,
# else from the host's apt sources, else deb.debian.org. Needs root and debootstrap.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/container-env.sh

SUITE=bookworm
PYTHON_IMAGE=${PYTHON_IMAGE:-docker.io/library/python:3.11-slim}
PROMETHEUS_IMAGE=${PROMETHEUS_IMAGE:-docker.io/prom/prometheus:v2.53.0}

debian_mirror() {
    if [[ -n "${DEBIAN_MIRROR:-}" ]]; then
        echo "$DEBIAN_MIRROR"
        return
    fi
    local found
    found=$(
        {
            # one-line format: deb [options] URI SUITE components
            sed -nE "s/^deb (\[[^]]*\] )?([a-z]+:[^ ]+) $SUITE .*/\2/p" /etc/apt/sources.list 2>/dev/null
            # deb822 format: URIs: and Suites: in one stanza
            awk -v suite="$SUITE" '
                /^URIs:/ { uri = $2 }
                /^Suites:/ { for (i = 2; i <= NF; i++) if ($i == suite) print uri }
                /^$/ { uri = "" }' /etc/apt/sources.list.d/*.sources 2>/dev/null
        } | grep -v -- '-security' | head -n 1
    )
    echo "${found:-http://deb.debian.org/debian}"
}

build_python() {
    command -v debootstrap >/dev/null || {
        echo "debootstrap is missing: apt-get install debootstrap" >&2
        exit 1
    }
    rootfs=$(mktemp -d)
    trap 'rm -rf "$rootfs" "$rootfs.log"' EXIT
    local mirror
    mirror=$(debian_mirror)
    echo "debootstrap $SUITE from $mirror" >&2
    debootstrap --variant=minbase --include=python3,python3-venv,python3-pip,ca-certificates \
        "$SUITE" "$rootfs" "$mirror" >"$rootfs.log" 2>&1 || {
        tail -n 20 "$rootfs.log" >&2
        exit 1
    }
    rm -f "$rootfs.log"
    rm -rf "$rootfs"/var/cache/apt/*.bin "$rootfs"/var/cache/apt/archives/*.deb \
        "$rootfs"/var/lib/apt/lists/* "$rootfs"/usr/share/doc/* "$rootfs"/usr/share/man/* \
        "$rootfs"/usr/share/info/* "$rootfs"/usr/share/locale/* "$rootfs"/var/log/*.log \
        "$rootfs"/usr/lib/python3.11/EXTERNALLY-MANAGED
    find "$rootfs/usr/lib/python3" "$rootfs/usr/lib/python3.11" -name __pycache__ -prune -exec rm -rf {} +
    ln -sf /usr/bin/python3 "$rootfs/usr/local/bin/python3"
    ln -sf /usr/bin/python3 "$rootfs/usr/local/bin/python"
    ln -sf /usr/bin/pip3 "$rootfs/usr/local/bin/pip3"
    ln -sf /usr/bin/pip3 "$rootfs/usr/local/bin/pip"
    tar -C "$rootfs" --numeric-owner -c . | "$CONTAINER_ENGINE" import \
        --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
        --change 'ENV LANG=C.UTF-8' \
        --change 'CMD ["python3"]' \
        - "$PYTHON_IMAGE" >/dev/null
    echo "built $PYTHON_IMAGE from Debian $SUITE packages" >&2
}

build_prometheus() {
    "$CONTAINER_ENGINE" image inspect "$PYTHON_IMAGE" >/dev/null 2>&1 || build_python
    local flags=()
    [[ "$CONTAINER_ENGINE" == podman ]] && flags=(--pull=never --isolation chroot --format docker)
    context=$(mktemp -d)
    trap 'rm -rf "$context"' EXIT
    # The same entrypoint, user, config and data paths as the official image.
    "$CONTAINER_ENGINE" build "${flags[@]}" -t "$PROMETHEUS_IMAGE" -f - "$context" <<EOF
FROM $PYTHON_IMAGE
RUN apt-get update && apt-get install -y --no-install-recommends prometheus \\
    && rm -rf /var/lib/apt/lists/* \\
    && mkdir -p /prometheus && chown nobody:nogroup /prometheus
USER nobody
WORKDIR /prometheus
EXPOSE 9090
ENTRYPOINT ["/usr/bin/prometheus"]
CMD ["--config.file=/etc/prometheus/prometheus.yml", "--storage.tsdb.path=/prometheus"]
EOF
}

case "${1:-python}" in
    python) build_python ;;
    prometheus) build_prometheus ;;
    *)
        echo "usage: $0 [python|prometheus]" >&2
        exit 2
        ;;
esac
