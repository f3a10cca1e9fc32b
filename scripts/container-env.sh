#!/usr/bin/env bash
# Choose the container engine and, for podman on a machine without systemd, give it private settings.
#
#   source scripts/container-env.sh   -> sets CONTAINER_ENGINE (docker | podman) and exports
#                                        CONTAINERS_CONF / CONTAINERS_STORAGE_CONF when needed
#   scripts/container-env.sh          -> prints the same as KEY=VALUE lines (for tests and debugging)
#
# CONTAINER_ENGINE=docker|podman forces an engine. Otherwise docker is used when its daemon answers,
# else podman. Podman as root on a host without systemd (CI runners, containers, WSL) fails with its
# packaged defaults (crun and cgroup v1, journald events, ulimits it may not raise), so it then gets
# the settings below in MLOPS_CONTAINER_HOME, never in /etc. MLOPS_PODMAN_CONFIG=private|system
# forces that choice either way.

mlops_pick_engine() {
    if [[ -n "${CONTAINER_ENGINE:-}" ]]; then
        command -v "$CONTAINER_ENGINE" >/dev/null || {
            echo "CONTAINER_ENGINE=$CONTAINER_ENGINE is not installed" >&2
            return 1
        }
    elif command -v docker >/dev/null && timeout 10 docker info >/dev/null 2>&1; then
        CONTAINER_ENGINE=docker
    elif command -v podman >/dev/null; then
        CONTAINER_ENGINE=podman
    else
        echo "no container engine: install podman (apt-get install podman buildah runc) or docker" >&2
        return 1
    fi
}

mlops_needs_private_podman_config() {
    case "${MLOPS_PODMAN_CONFIG:-auto}" in
        private) return 0 ;;
        system) return 1 ;;
        auto) [[ "$(id -u)" == 0 && ! -d /run/systemd/system ]] ;;
        *)
            echo "MLOPS_PODMAN_CONFIG must be auto, private or system" >&2
            return 2
            ;;
    esac
}

mlops_write_podman_config() {
    local home="$1"
    mkdir -p "$home/storage" "$home/run"
    cat >"$home/containers.conf" <<EOF
[containers]
netns = "host"
default_ulimits = ["nofile=16384:16384", "nproc=8192:8192"]

[engine]
runtime = "runc"
cgroup_manager = "cgroupfs"
events_logger = "file"
EOF
    cat >"$home/storage.conf" <<EOF
[storage]
driver = "overlay"
graphroot = "$home/storage"
runroot = "$home/run"
EOF
}

mlops_container_env() {
    mlops_pick_engine || return 1
    if [[ "$CONTAINER_ENGINE" == podman ]] && mlops_needs_private_podman_config; then
        local home="${MLOPS_CONTAINER_HOME:-${XDG_CACHE_HOME:-$HOME/.cache}/mlops-containers}"
        mlops_write_podman_config "$home"
        export CONTAINERS_CONF="$home/containers.conf"
        export CONTAINERS_STORAGE_CONF="$home/storage.conf"
    fi
    export CONTAINER_ENGINE
}

if [[ "${BASH_SOURCE[0]}" == "$0" ]]; then
    set -euo pipefail
    mlops_container_env
    echo "CONTAINER_ENGINE=$CONTAINER_ENGINE"
    echo "CONTAINERS_CONF=${CONTAINERS_CONF:-}"
    echo "CONTAINERS_STORAGE_CONF=${CONTAINERS_STORAGE_CONF:-}"
else
    mlops_container_env
fi
