#!/usr/bin/env bash
# Install the system tools the test suite uses, from Debian's packages, when they are missing:
#   prometheus, promtool        the real-Prometheus scrape test and the alert-rule tests
#   podman, buildah, runc       the image build-and-run test
#   debootstrap                 the offline base image when no registry can be reached
#   wrk, h2load (nghttp2-client) `make bench` (HTTP; gRPC)
#   chromium                    the sidecar's page, rendered and checked in a headless browser
# Idempotent and quick when everything is there. Without root (or without apt) it only says what is
# missing; the tests that need a missing tool are then skipped, naming it.
set -euo pipefail

declare -A PACKAGE_OF=(
    [prometheus]=prometheus
    [promtool]=prometheus
    [podman]=podman
    [buildah]=buildah
    [runc]=runc
    [debootstrap]=debootstrap
    [wrk]=wrk
    [chromium]=chromium
    [h2load]=nghttp2-client
)

missing_packages() {
    local tool
    for tool in "${!PACKAGE_OF[@]}"; do
        # Some live in /usr/sbin, which a non-login PATH may lack.
        PATH="$PATH:/usr/sbin:/sbin" command -v "$tool" >/dev/null || echo "${PACKAGE_OF[$tool]}"
    done | sort -u
}

apt_install() {
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$@" >/dev/null
}

mapfile -t packages < <(missing_packages)
if ((${#packages[@]} == 0)); then
    exit 0
fi
if [[ "$(id -u)" != 0 ]] || ! command -v apt-get >/dev/null; then
    echo "install-test-deps: missing ${packages[*]}; install them as root (apt-get install)" \
        "or the tests that need them are skipped" >&2
    exit 0
fi
echo "install-test-deps: installing ${packages[*]}" >&2
# The package lists are fetched only when the install cannot find a package in the ones present.
if ! apt_install "${packages[@]}" 2>/dev/null; then
    apt-get update -qq
    apt_install "${packages[@]}"
fi
