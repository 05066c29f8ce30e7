#!/usr/bin/env bash
# demo.sh: Stevedore on a real single-node Kubernetes cluster on this machine.
#
#   hack/demo.sh         bring up the cluster, install the operator, deploy
#                        MinIO + Bucket + PrometheusShipper + StoreGateway +
#                        Thanos Querier, wait for blocks to ship and sync,
#                        print the resources and one PromQL answer
#   hack/demo.sh install only the cluster, the images, the default StorageClass
#                        (local-path provisioner) and the operator; writes
#                        the environment the e2e suite reads to $BIN/e2e.env
#   hack/demo.sh down    tear it all down (make demo-down)
#
# Needs root (network namespaces, cgroups) and no Docker: the cluster is
# hack/cluster, the images come from hack/imagebuild.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

BIN=${BIN:-bin}
NS=stevedore-demo
step() { printf '\n==> %s\n' "$*"; }

step "provisioning Kubernetes, etcd, CoreDNS, containerd and the test peers (cached after the first run)"
eval "$(hack/testbin.sh cluster minio prometheus thanos local-path-provisioner busybox helm)"
mkdir -p "$BIN"
go build -o "$BIN/cluster" ./hack/cluster

MODE=${1:-demo}
case $MODE in
demo | install) ;;
down)
	"$BIN/cluster" down
	exit 0
	;;
*)
	echo "usage: hack/demo.sh [demo|install|down]" >&2
	exit 2
	;;
esac

step "starting the cluster"
eval "$("$BIN/cluster" up)"
KUBECTL=("$STEVEDORE_KUBE_BIN/kubectl")

step "building the images (no Docker: hack/imagebuild) and importing them into the node"
VERSION=${VERSION:-$(git describe --tags --always --dirty 2>/dev/null || echo dev)}
declare -A IMAGE
while read -r ref file; do
	name=${ref##*/}
	IMAGE[${name%%:*}]=$ref
	"$BIN/cluster" load "$file"
done < <(SOURCE_DATE_EPOCH=$(git log -1 --format=%ct 2>/dev/null || echo 0) \
	go run ./hack/imagebuild -version "$VERSION" -out "$BIN/images")

step "installing the default StorageClass local-path (Rancher's local-path provisioner)"
# Volumes are directories in the cluster's state directory: `cluster down`
# removes them with everything else.
LOCAL_PATH_DIR=$STEVEDORE_CLUSTER_DIR/volumes/local-path
mkdir -p "$LOCAL_PATH_DIR"
LOCAL_PATH_DIR=$LOCAL_PATH_DIR envsubst '${LOCAL_PATH_DIR}' <hack/demo/local-path-storage.yaml |
	"${KUBECTL[@]}" apply --server-side --force-conflicts -f - >/dev/null
"${KUBECTL[@]}" -n local-path-storage rollout status deployment/local-path-provisioner --timeout=3m

# OPERATOR_INSTALL=none leaves installing the operator to the caller: the e2e
# suite installs it with helm install, as users do.
if [[ ${OPERATOR_INSTALL:-kustomize} == none ]]; then
	managedBy=$("${KUBECTL[@]}" -n stevedore-system get deployment/stevedore-manager \
		-o jsonpath='{.metadata.labels.app\.kubernetes\.io/managed-by}' 2>/dev/null || echo absent)
	if [[ $managedBy != absent && $managedBy != Helm ]]; then
		# Helm refuses to take over objects it did not create.
		step "removing the operator an earlier make demo installed with kustomize (CRDs and resources stay)"
		"${KUBECTL[@]}" delete --ignore-not-found --wait namespace/stevedore-system \
			clusterrole/stevedore-manager clusterrolebinding/stevedore-manager >/dev/null
	fi
else
	step "installing the operator (config/default) in stevedore-system"
	"${KUBECTL[@]}" kustomize config/default |
		sed "s|image: stevedore-manager:latest|image: ${IMAGE[stevedore-manager]}|" |
		"${KUBECTL[@]}" apply --server-side --force-conflicts -f - >/dev/null
	"${KUBECTL[@]}" -n stevedore-system rollout status deployment/stevedore-manager --timeout=3m
fi

if [[ $MODE == install ]]; then
	# For test/e2e/olm_test.go (OLM_IMAGES=0 skips it; the first run builds OLM and opm).
	OLM_ENV=
	if [[ ${OLM_IMAGES:-1} != 0 ]]; then
		step "building and importing the OLM images: OLM, opm, the bundle, a catalog (hack/demo/olm/images.sh)"
		OLM_ENV=$(BIN=$BIN VERSION=$VERSION STEVEDORE_CLUSTER_DIR=$STEVEDORE_CLUSTER_DIR \
			STEVEDORE_E2E_MANAGER_IMAGE=${IMAGE[stevedore-manager]} STEVEDORE_E2E_AGENT_IMAGE=${IMAGE[stevedore-agent]} \
			hack/demo/olm/images.sh)
	fi
	cat >"$BIN/e2e.env" <<ENV
export KUBECONFIG=$KUBECONFIG
export STEVEDORE_KUBE_BIN=$STEVEDORE_KUBE_BIN
export STEVEDORE_CLUSTER_DIR=$STEVEDORE_CLUSTER_DIR
export STEVEDORE_E2E_MINIO_IMAGE=${IMAGE[stevedore-test-minio]}
export STEVEDORE_E2E_PROMETHEUS_IMAGE=${IMAGE[stevedore-test-prometheus]}
export STEVEDORE_E2E_THANOS_IMAGE=${IMAGE[stevedore-test-thanos]}
export STEVEDORE_E2E_AGENT_IMAGE=${IMAGE[stevedore-agent]}
export STEVEDORE_E2E_MANAGER_IMAGE=${IMAGE[stevedore-manager]}
export STEVEDORE_HELM=$STEVEDORE_HELM
$OLM_ENV
ENV
	echo "cluster, images and operator ready; environment for test/e2e in $BIN/e2e.env"
	exit 0
fi

MINIO_DATA=$STEVEDORE_CLUSTER_DIR/volumes/minio
mkdir -p "$MINIO_DATA/metrics"
chown -R 65532:65532 "$MINIO_DATA" # the images' nonroot user

step "deploying MinIO, a Bucket, a PrometheusShipper, a StoreGateway and a Thanos Querier in $NS"
MINIO_IMAGE=${IMAGE[stevedore-test-minio]} PROMETHEUS_IMAGE=${IMAGE[stevedore-test-prometheus]} \
	THANOS_IMAGE=${IMAGE[stevedore-test-thanos]} STORE_SHARDS=${STORE_SHARDS:-1} MINIO_DATA=$MINIO_DATA \
	envsubst '${MINIO_IMAGE} ${PROMETHEUS_IMAGE} ${THANOS_IMAGE} ${STORE_SHARDS} ${MINIO_DATA}' <hack/demo/stack.yaml |
	"${KUBECTL[@]}" apply --server-side -f -

step "waiting for Prometheus to cut a block, the sidecar to ship it and the store gateway to sync it"
start=$SECONDS
while :; do
	uploaded=$("${KUBECTL[@]}" -n $NS get psh prometheus -o jsonpath='{.status.uploaded}' 2>/dev/null || true)
	blocks=$("${KUBECTL[@]}" -n $NS get sgw store -o jsonpath='{.status.blocks}' 2>/dev/null || true)
	ready=$("${KUBECTL[@]}" -n $NS get sgw store -o jsonpath='{.status.conditions[?(@.type=="Ready")].status}' 2>/dev/null || true)
	printf '    %4ds  shipped blocks: %s  store gateway blocks: %s  ready: %s\n' $((SECONDS - start)) "${uploaded:-0}" "${blocks:-0}" "${ready:-?}"
	if [[ ${blocks:-0} -gt 0 && $ready == True ]]; then break; fi
	if ((SECONDS - start > 600)); then
		echo "no block synced after 10 minutes; pods:" >&2
		"${KUBECTL[@]}" get pods -A -o wide >&2
		exit 1
	fi
	sleep 10
done

step "kubectl get buckets,prometheusshippers,storegateways -n $NS"
"${KUBECTL[@]}" -n $NS get buckets,prometheusshippers,storegateways

QUERIER=$("${KUBECTL[@]}" -n $NS get svc querier -o jsonpath='{.spec.clusterIP}')
QUERY='count by (job, component) (up)'
step "PromQL through the Thanos Querier (Service $QUERIER:9090): $QUERY"
curl -fsS --get "http://$QUERIER:9090/api/v1/query" --data-urlencode "query=$QUERY"
echo

cat <<MSG

The cluster keeps running. Try:
    export KUBECONFIG=$KUBECONFIG
    $STEVEDORE_KUBE_BIN/kubectl get storegateways -A
    curl -s 'http://$QUERIER:9090/api/v1/query?query=up'
Tear it down with: make demo-down
MSG
