#!/usr/bin/env bash
# Run deploy/compose.yaml (scorer + sidecar + Prometheus + Grafana) with docker compose or
# podman-compose. Without a registry to pull Grafana's image from, the rest starts without it.
#
#   scripts/compose.sh up      build the image if missing, start the project, wait until it is ready
#   scripts/compose.sh down    stop and remove the containers (the volumes stay; add -v to drop them)
#   scripts/compose.sh ARGS    any other compose command, e.g. `logs -f sidecar` or `ps`
#
# With podman, podman-compose comes from PyPI into .tools/ (Debian's 1.0 mishandles host networking).
set -euo pipefail
project=$(cd "$(dirname "$0")/.." && pwd)
source "$project/scripts/container-env.sh"

PODMAN_COMPOSE_VERSION=1.6.0
IMAGE=${IMAGE:-mlops:latest}
PROMETHEUS_IMAGE=${PROMETHEUS_IMAGE:-docker.io/prom/prometheus:v2.53.0}
GRAFANA_IMAGE=${GRAFANA_IMAGE:-docker.io/grafana/grafana-oss:11.6.0}
export IMAGE PROMETHEUS_IMAGE GRAFANA_IMAGE
READY_URLS=(http://127.0.0.1:8080/health/ready http://127.0.0.1:8090/health/ready
    http://127.0.0.1:9090/-/ready)

compose_command() {
    if [[ "$CONTAINER_ENGINE" == docker ]]; then
        if docker compose version >/dev/null 2>&1; then
            echo "docker compose"
        else
            echo docker-compose
        fi
        return
    fi
    local tool="$project/.tools/podman-compose/bin/podman-compose"
    if [[ ! -x "$tool" ]]; then
        echo "installing podman-compose $PODMAN_COMPOSE_VERSION into .tools/podman-compose" >&2
        python3 -m venv "$project/.tools/podman-compose"
        "$project/.tools/podman-compose/bin/pip" install --quiet \
            "podman-compose==$PODMAN_COMPOSE_VERSION"
    fi
    echo "$tool"
}

# The services to start: all of them, or all but grafana when its image cannot be had.
SERVICES=()

ensure_images() {
    "$CONTAINER_ENGINE" image inspect "$IMAGE" >/dev/null 2>&1 || "$project/scripts/image.sh"
    if ! "$CONTAINER_ENGINE" image inspect "$GRAFANA_IMAGE" >/dev/null 2>&1 &&
        ! timeout 300 "$CONTAINER_ENGINE" pull "$GRAFANA_IMAGE" >/dev/null 2>&1; then
        echo "$GRAFANA_IMAGE cannot be pulled: starting without Grafana (import" \
            "deploy/grafana/dashboards/mlops.json into a Grafana of your own)" >&2
        SERVICES=(scorer sidecar prometheus)
    else
        READY_URLS+=(http://127.0.0.1:3000/api/health)
    fi
    "$CONTAINER_ENGINE" image inspect "$PROMETHEUS_IMAGE" >/dev/null 2>&1 && return
    timeout 300 "$CONTAINER_ENGINE" pull "$PROMETHEUS_IMAGE" >/dev/null 2>&1 && return
    echo "$PROMETHEUS_IMAGE cannot be pulled: building an offline stand-in" >&2
    "$project/scripts/base-image.sh" prometheus
}

wait_until_ready() {
    local url deadline=$((SECONDS + 120))
    for url in "${READY_URLS[@]}"; do
        until python3 -c 'import sys, urllib.request; urllib.request.urlopen(sys.argv[1], timeout=2)' \
            "$url" 2>/dev/null; do
            if ((SECONDS > deadline)); then
                echo "not ready after 120 s: $url; see '$0 logs'" >&2
                return 1
            fi
            sleep 1
        done
    done
    local grafana="grafana http://127.0.0.1:3000"
    ((${#SERVICES[@]} == 0)) || grafana="no grafana"
    echo "ready: scorer http://127.0.0.1:8080, sidecar http://127.0.0.1:8090," \
        "prometheus http://127.0.0.1:9090, $grafana" >&2
}

read -r -a compose <<<"$(compose_command)"
compose+=(--file "$project/deploy/compose.yaml")
case "${1:-}" in
    up)
        ensure_images
        "${compose[@]}" up -d "${@:2}" "${SERVICES[@]}"
        wait_until_ready
        ;;
    "")
        echo "usage: $0 up|down|<compose arguments>" >&2
        exit 2
        ;;
    *) "${compose[@]}" "$@" ;;
esac
