#!/usr/bin/env bash
# testbin.sh provisions the real servers that Stevedore's tests run against and
# prints the environment the tests read to find them.
#
#   hack/testbin.sh [COMPONENT...]     build/install what is missing, print env lines
#   eval "$(hack/testbin.sh)"          the usual way to use it
#
# Components (default: all): kube etcd minio prometheus thanos helm memcached prometheus2 protoc cluster
#   local-path-provisioner busybox (the local cluster's StorageClass, hack/demo.sh)
#   olm opm (the Operator Lifecycle Manager and operator-registry's opm, for
#   installing the OLM bundle on the local cluster: test/e2e/olm_test.go)
#   cluster: what hack/cluster runs a single-node cluster with (kube etcd coredns
#   and Debian's containerd, runc, CNI plugins, iptables, conntrack)
#
# Go-built binaries are compiled from the Go module proxy through the wrapper
# modules under hack/tools/ and cached by version under
# ${XDG_CACHE_HOME:-$HOME/.cache}/stevedore. Each one is built into a temporary
# directory and renamed into place, so an interrupted build never leaves a
# half-written cache entry and a second run is instant. Debian packages
# (memcached, Prometheus 2.x, protoc) are installed with apt-get when missing.
set -euo pipefail

# One Kubernetes release for envtest and the local cluster, so a cold machine
# compiles Kubernetes once. The kubelet must be v1.34 or older here: these
# machines run cgroup v1 with Debian's containerd 1.6, which v1.35+ refuse.
KUBE_VERSION=v1.34.4
COREDNS_VERSION=v1.15.0 # must match hack/tools/coredns/go.mod
ETCD_VERSION=v3.7.3
MINIO_VERSION=v0.0.0-20260212201848-7aac2a2c5b7c
PROMETHEUS_VERSION=v0.315.0 # Go module version of Prometheus 3.15.0
THANOS_VERSION=v0.42.4
LOCAL_PATH_PROVISIONER_VERSION=v0.0.30 # must match hack/tools/local-path-provisioner/go.mod
HELM_VERSION=v3.22.0 # must match hack/tools/helm/go.mod
OLM_VERSION=v0.28.0   # must match hack/tools/olm/go.mod
OPM_VERSION=v1.55.0   # must match hack/tools/opm/go.mod (with grpc_health_probe)

ROOT=${STEVEDORE_ROOT:-$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)}
CACHE=${XDG_CACHE_HOME:-$HOME/.cache}/stevedore
mkdir -p "$CACHE"

log() { echo "testbin: $*" >&2; }

# build NAME DIR CMD...: run CMD with $OUT set to a fresh temporary directory,
# then rename it to $CACHE/DIR. Skips everything when $CACHE/DIR exists.
build() {
	local name=$1 dir=$2
	shift 2
	if [[ -d "$CACHE/$dir" ]]; then
		return 0
	fi
	log "building $name into $CACHE/$dir (cold builds take minutes)"
	local start=$SECONDS
	OUT=$(mktemp -d "$CACHE/.tmp-$dir.XXXXXX")
	if ! "$@"; then
		rm -rf "$OUT"
		log "building $name failed"
		return 1
	fi
	# Another run may have finished the same build meanwhile: keep the first.
	if ! mv -T "$OUT" "$CACHE/$dir" 2>/dev/null; then
		rm -rf "$OUT"
	fi
	log "built $name in $((SECONDS - start))s"
}

gobuild() { # gobuild MODULE_DIR OUTPUT LDFLAGS PACKAGE [TAGS]
	(cd "$ROOT/hack/tools/$1" && CGO_ENABLED=0 GOFLAGS=-mod=readonly go build -trimpath \
		${5:+-tags "$5"} -ldflags "-s -w $3" -o "$OUT/$2" "$4")
}

build_kube() {
	local v=${KUBE_VERSION#v} pkg ld=""
	local major=${v%%.*} minor
	minor=${v#*.}
	minor=${minor%%.*}
	for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
		ld+=" -X $pkg.gitVersion=$KUBE_VERSION -X $pkg.gitMajor=$major -X $pkg.gitMinor=$minor"
		ld+=" -X $pkg.gitTreeState=clean -X $pkg.buildDate=1970-01-01T00:00:00Z"
	done
	# One go build for all of them: they share most packages.
	(cd "$ROOT/hack/tools/kube" && CGO_ENABLED=0 GOFLAGS=-mod=readonly go build -trimpath \
		-ldflags "-s -w $ld" -o "$OUT/" \
		k8s.io/kubernetes/cmd/kube-apiserver k8s.io/kubernetes/cmd/kubectl \
		k8s.io/kubernetes/cmd/kube-controller-manager k8s.io/kubernetes/cmd/kube-scheduler \
		k8s.io/kubernetes/cmd/kubelet k8s.io/kubernetes/cmd/kube-proxy)
}

build_coredns() {
	gobuild coredns coredns "-X github.com/coredns/coredns/coremain.GitCommit=$COREDNS_VERSION" .
}

build_etcd() {
	gobuild etcd etcd "" go.etcd.io/etcd/server/v3
}

build_minio() {
	(cd "$OUT" && CGO_ENABLED=0 GOBIN="$OUT" GOFLAGS= go install -trimpath -ldflags "-s -w" \
		"github.com/minio/minio@$MINIO_VERSION")
}

build_prometheus() {
	# The Go module v0.315.0 is Prometheus 3.15.0. Tests only use static
	# scrape configs, so the service-discovery plugins (cloud SDKs, client-go)
	# are left out: a third fewer packages to compile on a cold machine.
	local rest=${PROMETHEUS_VERSION#v0.}
	local mm=${rest%%.*}
	local v="${mm:0:1}.${mm:1}.${rest#*.}"
	gobuild prometheus prometheus \
		"-X github.com/prometheus/common/version.Version=$v -X github.com/prometheus/common/version.Branch=HEAD -X github.com/prometheus/common/version.Revision=module" \
		github.com/prometheus/prometheus/cmd/prometheus remove_all_sd
}

build_thanos() {
	gobuild thanos thanos \
		"-X github.com/prometheus/common/version.Version=${THANOS_VERSION#v} -X github.com/prometheus/common/version.Branch=HEAD -X github.com/prometheus/common/version.Revision=module" \
		github.com/thanos-io/thanos/cmd/thanos netgo,slicelabels
}

build_helm() {
	# As helm's Makefile does: the version, and the Kubernetes version that
	# `helm template`/`helm lint` assume (.Capabilities.KubeVersion), taken
	# from the client-go the module builds with (v0.X.Y is Kubernetes 1.X).
	local cg minor r=helm.sh/helm/v3
	cg=$(sed -n 's/^[[:space:]]*k8s.io\/client-go v0\.\([0-9]*\)\..*/\1/p' "$ROOT/hack/tools/helm/go.mod")
	minor=${cg:?no k8s.io/client-go in hack/tools/helm/go.mod}
	gobuild helm helm \
		"-X $r/internal/version.version=$HELM_VERSION -X $r/internal/version.gitTreeState=clean -X $r/pkg/lint/rules.k8sVersionMajor=1 -X $r/pkg/lint/rules.k8sVersionMinor=$minor -X $r/pkg/chartutil.k8sVersionMajor=1 -X $r/pkg/chartutil.k8sVersionMinor=$minor" \
		helm.sh/helm/v3/cmd/helm
}

build_local_path_provisioner() {
	gobuild local-path-provisioner local-path-provisioner \
		"-X main.VERSION=$LOCAL_PATH_PROVISIONER_VERSION" github.com/rancher/local-path-provisioner
}

build_olm() {
	# One go build for the OLM image's programs: they share most packages.
	local p=github.com/operator-framework/operator-lifecycle-manager
	(cd "$ROOT/hack/tools/olm" && CGO_ENABLED=0 GOFLAGS=-mod=readonly go build -trimpath \
		-ldflags "-s -w -X $p/pkg/version.OLMVersion=${OLM_VERSION#v} -X $p/pkg/version.GitCommit=module" -o "$OUT/" \
		$p/cmd/olm $p/cmd/catalog $p/cmd/package-server $p/cmd/copy-content $p/util/cpb)
}

build_opm() {
	# As operator-registry's Makefile, but static: without cgo, go-sqlite3 is
	# a stub, so opm's deprecated SQLite commands fail; bundle extract and
	# serving a file-based catalog do not use SQLite.
	local p=github.com/operator-framework/operator-registry/cmd/opm/version
	gobuild opm opm "-X $p.opmVersion=$OPM_VERSION -X $p.gitCommit=module -X $p.buildDate=1970-01-01T00:00:00Z" \
		github.com/operator-framework/operator-registry/cmd/opm json1,containers_image_openpgp
	gobuild opm grpc_health_probe "" github.com/grpc-ecosystem/grpc-health-probe
}

# apt_install BINARY PACKAGE: install a Debian package unless BINARY is on PATH.
APT_UPDATED=
apt_install() {
	if command -v "$1" >/dev/null 2>&1; then
		return 0
	fi
	log "installing Debian package $2"
	local sudo=""
	[[ $(id -u) -eq 0 ]] || sudo=sudo
	if [[ -z $APT_UPDATED ]]; then
		$sudo apt-get update -qq >&2
		APT_UPDATED=1
	fi
	# Packages such as prometheus ship a service; nothing should start here.
	DEBIAN_FRONTEND=noninteractive RUNLEVEL=1 $sudo apt-get install -y -qq --no-install-recommends "$2" >"$CACHE/apt-$2.log" 2>&1 ||
		{ cat "$CACHE/apt-$2.log" >&2; return 1; }
}

components=("$@")
[[ ${#components[@]} -gt 0 ]] || components=(kube etcd minio prometheus thanos helm memcached prometheus2 protoc cluster)

for c in "${components[@]}"; do
	case $c in
	kube)
		build kubernetes "kube-$KUBE_VERSION" build_kube
		echo "export STEVEDORE_KUBE_BIN=$CACHE/kube-$KUBE_VERSION"
		;;
	etcd)
		build etcd "etcd-$ETCD_VERSION" build_etcd
		;;
	minio)
		build minio "minio-$MINIO_VERSION" build_minio
		echo "export STEVEDORE_MINIO=$CACHE/minio-$MINIO_VERSION/minio"
		;;
	prometheus)
		build prometheus "prometheus-$PROMETHEUS_VERSION-nosd" build_prometheus
		echo "export STEVEDORE_PROMETHEUS=$CACHE/prometheus-$PROMETHEUS_VERSION-nosd/prometheus"
		;;
	thanos)
		build thanos "thanos-$THANOS_VERSION" build_thanos
		echo "export STEVEDORE_THANOS=$CACHE/thanos-$THANOS_VERSION/thanos"
		;;
	helm)
		build helm "helm-$HELM_VERSION" build_helm
		echo "export STEVEDORE_HELM=$CACHE/helm-$HELM_VERSION/helm"
		;;
	memcached)
		apt_install memcached memcached
		echo "export STEVEDORE_MEMCACHED=$(command -v memcached || echo /usr/bin/memcached)"
		;;
	prometheus2)
		# Debian's Prometheus 2.x: the "older Prometheus" the sidecar must support.
		if [[ ! -x /usr/bin/prometheus ]]; then apt_install /usr/bin/prometheus prometheus; fi
		echo "export STEVEDORE_PROMETHEUS2=/usr/bin/prometheus"
		;;
	protoc)
		apt_install protoc protobuf-compiler
		# The well-known types (google/protobuf/any.proto) come with the -dev package.
		[[ -f /usr/include/google/protobuf/any.proto ]] || { command -v apt-get >/dev/null && apt_install /nonexistent/any.proto libprotobuf-dev; }
		echo "export PROTOC=$(command -v protoc)"
		;;
	local-path-provisioner)
		# The local cluster's default StorageClass (hack/demo/local-path-storage.yaml).
		build local-path-provisioner "local-path-provisioner-$LOCAL_PATH_PROVISIONER_VERSION" build_local_path_provisioner
		echo "export STEVEDORE_LOCAL_PATH_PROVISIONER=$CACHE/local-path-provisioner-$LOCAL_PATH_PROVISIONER_VERSION/local-path-provisioner"
		;;
	olm)
		build olm "olm-$OLM_VERSION" build_olm
		# The olm binary; catalog, package-server, copy-content and cpb are next to it.
		echo "export STEVEDORE_OLM=$CACHE/olm-$OLM_VERSION/olm"
		# OLM's CRDs, from its module (the wrapper module downloaded it).
		echo "export STEVEDORE_OLM_CRDS=$(cd "$ROOT/hack/tools/olm" && GOFLAGS=-mod=readonly go list -m -f '{{.Dir}}' github.com/operator-framework/operator-lifecycle-manager)/deploy/chart/crds"
		;;
	opm)
		build opm "opm-$OPM_VERSION" build_opm
		echo "export STEVEDORE_OPM=$CACHE/opm-$OPM_VERSION/opm"
		echo "export STEVEDORE_GRPC_HEALTH_PROBE=$CACHE/opm-$OPM_VERSION/grpc_health_probe"
		;;
	busybox)
		# Debian's static busybox: the shell of the provisioner's helper pods
		# and of the samples' initContainers (an image from hack/imagebuild).
		# (Debian's busybox package is dynamically linked: check for the static one.)
		if ! dpkg-query -W -f='${Status}' busybox-static 2>/dev/null | grep -q 'ok installed'; then
			apt_install /nonexistent/busybox-static busybox-static
		fi
		echo "export STEVEDORE_BUSYBOX=/bin/busybox"
		;;
	cluster)
		build kubernetes "kube-$KUBE_VERSION" build_kube
		build etcd "etcd-$ETCD_VERSION" build_etcd
		build coredns "coredns-$COREDNS_VERSION" build_coredns
		apt_install containerd containerd
		apt_install runc runc
		apt_install /usr/lib/cni/bridge containernetworking-plugins
		apt_install iptables iptables
		apt_install conntrack conntrack
		echo "export STEVEDORE_KUBE_BIN=$CACHE/kube-$KUBE_VERSION"
		echo "export STEVEDORE_ETCD=$CACHE/etcd-$ETCD_VERSION/etcd"
		echo "export STEVEDORE_COREDNS=$CACHE/coredns-$COREDNS_VERSION/coredns"
		;;
	*)
		log "unknown component $c"
		exit 2
		;;
	esac
done

# envtest wants kube-apiserver, etcd and kubectl in one directory.
if [[ -d "$CACHE/kube-$KUBE_VERSION" && -d "$CACHE/etcd-$ETCD_VERSION" ]]; then
	assets="$CACHE/envtest-$KUBE_VERSION-$ETCD_VERSION"
	if [[ ! -d $assets ]]; then
		tmp=$(mktemp -d "$CACHE/.tmp-envtest.XXXXXX")
		ln -s "$CACHE/kube-$KUBE_VERSION/kube-apiserver" "$CACHE/kube-$KUBE_VERSION/kubectl" "$tmp/"
		ln -s "$CACHE/etcd-$ETCD_VERSION/etcd" "$tmp/"
		mv -T "$tmp" "$assets" 2>/dev/null || rm -rf "$tmp"
	fi
	echo "export KUBEBUILDER_ASSETS=$assets"
fi
