#!/usr/bin/env bash
# Deploy a released scoring image (scorer + monitoring sidecar, deploy/k8s) to a Kubernetes cluster.
#
#   IMAGE=<ref> [KIND_CLUSTER=mlops-smoke] scripts/ci/k8s-release.sh smoke
#       load the image into a kind cluster, deploy one replica into the namespace mlops-smoke,
#       port-forward the Service and run the smoke test (python -m mlops.gitops.smoke) against it
#   IMAGE=<ref@sha256:...> KUBE_CONFIG=<kubeconfig text> [NAMESPACE=mlops] scripts/ci/k8s-release.sh deploy
#       apply the manifests with the image to the cluster KUBE_CONFIG points at; wait for the rollout
#       (with a challenger: RELEASE_ROLE, COMPANION_IMAGE, CHAMPION_VERSION, CHALLENGER_VERSION,
#       CHALLENGER_MODE, as the release's deploy job sets them)
#
# The manifests are deploy/k8s (a kustomize base), or deploy/k8s-challenger (the champion and a
# challenger in one pod), under a generated overlay that sets the images, the namespace and the
# replicas (python -m mlops.gitops.k8s_overlay). The kubeconfig is written to a private temporary
# file and never printed.
set -euo pipefail
cd "$(dirname "$0")/../.."

ROLLOUT_TIMEOUT=${ROLLOUT_TIMEOUT:-300s}
SCORER_PORT=${SCORER_PORT:-18080}
SIDECAR_PORT=${SIDECAR_PORT:-18090}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

# write_overlay DIR IMAGE NAMESPACE REPLICAS: a kustomization over deploy/k8s, or, with a
# challenger (CHALLENGER_VERSION, CHALLENGER_MODE, CHAMPION_VERSION; IMAGE in RELEASE_ROLE, the
# other role's COMPANION_IMAGE), over deploy/k8s-challenger with both images
write_overlay() {
    local dir=$1 image=$2 namespace=$3 replicas=$4
    PYTHONPATH=src python3 -m mlops.gitops.k8s_overlay --out "$dir/kustomization.yaml" \
        --image "$image" --namespace "$namespace" --replicas "$replicas" \
        --role "${RELEASE_ROLE:-champion}" --companion-image "${COMPANION_IMAGE:-}" \
        --champion "${CHAMPION_VERSION:-}" --challenger "${CHALLENGER_VERSION:-}" \
        --challenger-mode "${CHALLENGER_MODE:-}" >&2
}

apply() {
    local namespace=$1
    kubectl create namespace "$namespace" --dry-run=client -o yaml | kubectl apply -f -
    kubectl apply -k "$work"
    if ! kubectl -n "$namespace" rollout status deployment/mlops-scorer --timeout="$ROLLOUT_TIMEOUT"; then
        kubectl -n "$namespace" describe pods -l app.kubernetes.io/name=mlops-scorer || true
        kubectl -n "$namespace" logs -l app.kubernetes.io/name=mlops-scorer --all-containers --tail=50 || true
        return 1
    fi
}

smoke() {
    local image=${IMAGE:?set IMAGE} cluster=${KIND_CLUSTER:-mlops-smoke} namespace=mlops-smoke
    kind load docker-image "$image" --name "$cluster"
    write_overlay "$work" "$image" "$namespace" 1
    apply "$namespace"
    kubectl -n "$namespace" port-forward service/mlops-scorer "$SCORER_PORT:80" "$SIDECAR_PORT:8090" \
        >"$work/port-forward.log" 2>&1 &
    local forward=$!
    local status=0
    PYTHONPATH=src python3 -m mlops.gitops.smoke --timeout 120 \
        --scorer "http://127.0.0.1:$SCORER_PORT" --sidecar "http://127.0.0.1:$SIDECAR_PORT" || status=$?
    kill "$forward" 2>/dev/null || true
    if [[ $status -ne 0 ]]; then
        cat "$work/port-forward.log" >&2
        kubectl -n "$namespace" logs -l app.kubernetes.io/name=mlops-scorer --all-containers --tail=50 || true
    fi
    return "$status"
}

deploy() {
    local image=${IMAGE:?set IMAGE} namespace=${NAMESPACE:-mlops}
    if [[ -z "${KUBE_CONFIG:-}" ]]; then
        echo "KUBE_CONFIG is empty: set the repository secret KUBE_CONFIG to deploy" >&2
        return 1
    fi
    (umask 077 && printf '%s\n' "$KUBE_CONFIG" >"$work/kubeconfig")
    export KUBECONFIG="$work/kubeconfig"
    write_overlay "$work" "$image" "$namespace" "${REPLICAS:-2}"
    apply "$namespace"
    echo "deployed $image to namespace $namespace"
}

# render IMAGE NAMESPACE: print the manifests the overlay produces (no cluster needed)
render() {
    write_overlay "$work" "${IMAGE:?set IMAGE}" "${NAMESPACE:-mlops}" "${REPLICAS:-2}"
    kubectl kustomize "$work"
}

case "${1:-}" in
    smoke) smoke ;;
    deploy) deploy ;;
    render) render ;;
    *)
        echo "usage: $0 smoke|deploy|render" >&2
        exit 2
        ;;
esac
