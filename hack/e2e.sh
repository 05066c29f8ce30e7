#!/usr/bin/env bash
# e2e.sh: the end-to-end suite on a real single-node cluster (make e2e).
# Brings up the cluster and images (hack/demo.sh install; the suite itself
# installs the operator with helm install), runs test/e2e against it and
# tears the cluster down, also when the suite fails.
#   KEEP=1 hack/e2e.sh   leave the cluster running afterwards (make demo-down)
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
BIN=${BIN:-bin}

teardown() {
	local rc=$?
	if [[ $rc -ne 0 && -f ${KUBECONFIG:-/nonexistent} ]]; then
		# What CI needs to tell why, before the cluster is gone.
		local k=("$STEVEDORE_KUBE_BIN/kubectl" --request-timeout=10s)
		echo "==> e2e failed; cluster state" >&2
		"${k[@]}" get nodes,pods -A -o wide >&2 || true
		"${k[@]}" get buckets,prometheusshippers,storegateways -A -o wide >&2 || true
		"${k[@]}" get events -A --sort-by=.lastTimestamp >&2 | tail -40 || true
		"${k[@]}" -n stevedore-system logs deployment/stevedore-manager --tail=60 >&2 || true
		echo "(node logs: ${STEVEDORE_CLUSTER_DIR:-/var/lib/stevedore-cluster}/logs, removed with the cluster; KEEP=1 keeps them)" >&2
	fi
	if [[ -z ${KEEP:-} ]]; then
		"$BIN/cluster" down || rc=1
	else
		echo "cluster left running (KEEP=1); remove with: make demo-down"
	fi
	exit $rc
}
trap teardown EXIT

OPERATOR_INSTALL=none hack/demo.sh install
# shellcheck disable=SC1091
source "$BIN/e2e.env"
# pipefail: the suite's status, not tee's.
STEVEDORE_E2E=1 go test -count=1 -timeout 30m -v ./test/e2e/ 2>&1 | tee "$BIN/e2e.log"
