#!/usr/bin/env bash
# Pull from or push to the project's DVC remote in CI, or skip cleanly when it is not configured.
#
#   scripts/ci/dvc-remote.sh pull   -> dvc pull --run-cache --allow-missing
#   scripts/ci/dvc-remote.sh push   -> dvc push --run-cache
#
# DVC_REMOTE_URL (a repository secret, e.g. s3://bucket/mlops) switches the remote on: it becomes
# the default remote `ci` in .dvc/config.local (never committed). The storage credentials come
# from their usual variables (AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_ENDPOINT_URL, ...).
# Without DVC_REMOTE_URL (a fork, a pull request from a fork, a fresh template) nothing is pulled
# or pushed: the pipeline reproduces from the data in git and the cache CI keeps between runs.
# Once the remote is on, a failure is an error: credentials that exist must work.
set -euo pipefail
cd "$(dirname "$0")/../.."

action=${1:-}
case "$action" in
    pull) arguments=(pull --run-cache --allow-missing) ;;
    push) arguments=(push --run-cache) ;;
    *)
        echo "usage: $0 pull|push" >&2
        exit 2
        ;;
esac

if [[ -z "${DVC_REMOTE_URL:-}" ]]; then
    echo "DVC_REMOTE_URL is not set: skipping dvc $action (no remote credentials in this run)"
    exit 0
fi

dvc remote add --local --force --default ci "$DVC_REMOTE_URL" >/dev/null
echo "dvc $action: the remote named by DVC_REMOTE_URL"
dvc "${arguments[@]}"
