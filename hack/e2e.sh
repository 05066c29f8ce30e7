#!/usr/bin/env bash
# e2e.sh: the end-to-end suite on a real single-node cluster (make e2e).
# Brings up the cluster, images and operator (hack/demo.sh install), runs
# test/e2e against it and tears the cluster down, also when the suite fails.
#   KEEP=1 hack/e2e.sh   leave the cluster running afterwards (make demo-down)
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
BIN=${BIN:-bin}

teardown() {
	local rc=$?
	if [[ -z ${KEEP:-} ]]; then
		"$BIN/cluster" down || rc=1
	else
		echo "cluster left running (KEEP=1); remove with: make demo-down"
	fi
	exit $rc
}
trap teardown EXIT

hack/demo.sh install
# shellcheck disable=SC1091
source "$BIN/e2e.env"
# pipefail: the suite's status, not tee's.
STEVEDORE_E2E=1 go test -count=1 -timeout 30m -v ./test/e2e/ 2>&1 | tee "$BIN/e2e.log"
