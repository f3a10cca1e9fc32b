#!/usr/bin/env bash
# Build the production image (Dockerfile) with docker or podman, whichever works here.
#
#   scripts/image.sh [CONTEXT]     CONTEXT defaults to the project root; it must hold the Dockerfile,
#                                  the sources, uv.lock and a packaged model in models/package
#
# Settings (environment):
#   IMAGE          tag to build (default mlops:latest)
#   PYTHON_IMAGE   base image (default python:3.11-slim); when it can be neither found nor pulled,
#                  an offline stand-in is built from Debian packages (scripts/base-image.sh)
#   CA_BUNDLE      a PEM bundle trusted for the build's downloads, for TLS-intercepting proxies
#                  (default: $SSL_CERT_FILE when set). Passed as a build secret: it never enters a layer.
set -euo pipefail
project=$(cd "$(dirname "$0")/.." && pwd)
context=$(cd "${1:-$project}" && pwd)
source "$project/scripts/container-env.sh"

IMAGE=${IMAGE:-mlops:latest}
PYTHON_IMAGE=${PYTHON_IMAGE:-docker.io/library/python:3.11-slim}
CA_BUNDLE=${CA_BUNDLE-${SSL_CERT_FILE:-}}
package="$context/models/package"

if [[ ! -f "$package/manifest.json" ]]; then
    echo "$package/manifest.json: no packaged model; run 'make repro' first" >&2
    exit 1
fi

ensure_base_image() {
    "$CONTAINER_ENGINE" image inspect "$PYTHON_IMAGE" >/dev/null 2>&1 && return
    timeout 300 "$CONTAINER_ENGINE" pull "$PYTHON_IMAGE" >/dev/null 2>&1 && return
    echo "$PYTHON_IMAGE cannot be pulled: building an offline stand-in from Debian packages" >&2
    PYTHON_IMAGE="$PYTHON_IMAGE" "$project/scripts/base-image.sh" python
}

read_model_identity() {
    python3 - "$package/manifest.json" <<'PY'
import json, sys
manifest = json.load(open(sys.argv[1]))
print(manifest["model_name"], manifest["model_version"], manifest["files"]["model.onnx"])
PY
}

git_or() {
    git -C "$context" "$@" 2>/dev/null || git -C "$project" "$@" 2>/dev/null || true
}

ensure_base_image
read -r model_name model_version model_sha256 < <(read_model_identity)

secret_file="$CA_BUNDLE"
if [[ -z "$secret_file" ]]; then
    secret_file=$(mktemp)
    trap 'rm -f "$secret_file"' EXIT
elif [[ ! -f "$secret_file" ]]; then
    echo "CA_BUNDLE=$CA_BUNDLE: no such file" >&2
    exit 1
fi

engine_flags=()
if [[ "$CONTAINER_ENGINE" == podman ]]; then
    # --format docker keeps HEALTHCHECK; chroot isolation needs no user namespaces or cgroups.
    engine_flags=(--pull=never --isolation chroot --format docker --layers)
else
    export DOCKER_BUILDKIT=1
fi

started=$(date +%s)
"$CONTAINER_ENGINE" build "${engine_flags[@]}" \
    --secret "id=ca_bundle,src=$secret_file" \
    --build-arg "PYTHON_IMAGE=$PYTHON_IMAGE" \
    --build-arg "SOURCE=$(git_or remote get-url origin)" \
    --build-arg "REVISION=$(git_or rev-parse HEAD)" \
    --build-arg "CREATED=$(git_or log -1 --format=%cI)" \
    --build-arg "VERSION=$(sed -n 's/^version = "\(.*\)"/\1/p' "$context/pyproject.toml")" \
    --build-arg "MODEL_NAME=$model_name" \
    --build-arg "MODEL_VERSION=$model_version" \
    --build-arg "MODEL_SHA256=$model_sha256" \
    -t "$IMAGE" -f "$context/Dockerfile" "$context"
size=$("$CONTAINER_ENGINE" image inspect --format '{{.Size}}' "$IMAGE")
echo "built $IMAGE with $CONTAINER_ENGINE in $(($(date +%s) - started)) s, $((size / 1000000)) MB" >&2
