#!/usr/bin/env bash
# run-local.sh: the local demo. Starts a real control plane (etcd +
# kube-apiserver), installs the Stevedore CRDs, runs the operator, applies the
# samples and prints `kubectl get buckets,prometheusshippers,storegateways`.
#
#   hack/run-local.sh          run, print, tear down
#   KEEP=1 hack/run-local.sh   leave everything running (stop with: make run-down)
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

STATE=bin/local
mkdir -p "$STATE"
step() { printf '\n==> %s\n' "$*"; }

step "provisioning kube-apiserver, etcd and kubectl (cached after the first run)"
eval "$(hack/testbin.sh kube etcd)"
KUBECTL="$KUBEBUILDER_ASSETS/kubectl"
export KUBECONFIG="$PWD/$STATE/kubeconfig"

step "building the operator"
go build -o bin/manager ./cmd/manager
go build -o bin/localcp ./hack/localcp

cleanup() {
	[[ -n ${KEEP:-} ]] && { echo "left running; stop with: make run-down"; return; }
	step "tearing down"
	[[ -f $STATE/manager.pid ]] && kill "$(cat "$STATE/manager.pid")" 2>/dev/null || true
	[[ -f $STATE/localcp.pid ]] && kill "$(cat "$STATE/localcp.pid")" 2>/dev/null || true
	wait 2>/dev/null || true
	rm -f "$STATE"/*.pid
}
trap cleanup EXIT

step "starting the control plane"
rm -f "$KUBECONFIG"
bin/localcp --write-kubeconfig "$KUBECONFIG" >"$STATE/localcp.log" 2>&1 &
echo $! >"$STATE/localcp.pid"
for _ in $(seq 120); do [[ -f $KUBECONFIG ]] && break; sleep 0.5; done
[[ -f $KUBECONFIG ]] || { cat "$STATE/localcp.log"; echo "control plane did not start" >&2; exit 1; }
"$KUBECTL" version 2>/dev/null | sed 's/^/    /'

step "starting the operator (log: $STATE/manager.log)"
bin/manager --metrics-bind-address=0 --health-probe-bind-address=127.0.0.1:0 >"$STATE/manager.log" 2>&1 &
echo $! >"$STATE/manager.pid"

step "applying the samples"
for f in config/samples/*.yaml; do
	[[ -f $f ]] && "$KUBECTL" apply -f "$f"
done
sleep 5

step "kubectl get buckets,prometheusshippers,storegateways"
"$KUBECTL" get buckets,prometheusshippers,storegateways
