#!/usr/bin/env bash
# images.sh: build and import into the local cluster's node the images that
# installing Stevedore from its OLM bundle needs (test/e2e/olm_test.go), and
# print the environment lines the suite reads. hack/demo.sh install runs it
# with the cluster up; it needs $STEVEDORE_CLUSTER_DIR, $BIN/cluster, ctr
# and the manager and agent images already imported.
#
#   stevedore-test-olm, stevedore-test-opm   OLM v0.28.0 and opm v1.55.0
#   ghcr.io/stevedore-dev/stevedore-bundle:v0.1.0
#                                            bundle/ as an image (bundle.Dockerfile's content)
#   stevedore-test-catalog                   a file-based catalog: `opm render bundle/`
#                                            with the bundle image BY DIGEST, served by opm
#
# OLM names a catalog or bundle image by tag with imagePullPolicy Always and
# by digest with IfNotPresent (pkg/lib/image.InferImagePullPolicy), and the
# node reaches no registry: the bundle and catalog images are referenced as
# repo@sha256:<digest of the image in the node's containerd>, and each gets
# that name in containerd as well (the kubelet's CRI finds images by name).
# The bundle's CSV names the manager and agent as
# ghcr.io/stevedore-dev/stevedore-{manager,agent}:v0.1.0: those names are
# added to the images built from this tree ($STEVEDORE_E2E_MANAGER_IMAGE,
# $STEVEDORE_E2E_AGENT_IMAGE).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../../.."
BIN=${BIN:-bin}
VERSION=${VERSION:-$(git describe --tags --always --dirty 2>/dev/null || echo dev)}
: "${STEVEDORE_CLUSTER_DIR:?bring the cluster up first (hack/demo.sh install)}"
CTR=(ctr --address "$STEVEDORE_CLUSTER_DIR/containerd/containerd.sock" --namespace k8s.io)
log() { echo "olm images: $*" >&2; }

eval "$(hack/testbin.sh olm opm busybox)"
OUT=$BIN/images/olm
mkdir -p "$OUT"
export SOURCE_DATE_EPOCH=${SOURCE_DATE_EPOCH:-$(git log -1 --format=%ct 2>/dev/null || echo 0)}

# digest REF: the digest of the image REF in the node's containerd.
digest() {
	local d
	d=$("${CTR[@]}" images ls "name==$1" | awk -v r="$1" '$1 == r {print $3}')
	[[ $d == sha256:* ]] || { log "no image $1 in the node's containerd"; return 1; }
	echo "$d"
}

# by_digest REF: prints REPO@DIGEST for REF (REPO:TAG) and gives the image
# that name too.
by_digest() {
	local ref=$1 d
	d=$(digest "$ref")
	"${CTR[@]}" images tag --force "$ref" "${ref%:*}@$d" >/dev/null
	echo "${ref%:*}@$d"
}

declare -A IMG
while read -r ref file; do
	"$BIN/cluster" load "$file" >&2
	IMG[${file##*/}]=$ref
done < <(go run ./hack/imagebuild -version "$VERSION" -out "$OUT" -only olm,opm,bundle -bundle bundle)
OLM_IMAGE=${IMG[stevedore-test-olm.tar]}
OPM_IMAGE=${IMG[stevedore-test-opm.tar]}
BUNDLE_IMAGE=$(by_digest "${IMG[stevedore-bundle.tar]}")
log "bundle image $BUNDLE_IMAGE"

# The catalog: package stevedore, channel alpha (bundle/metadata), the
# bundle as opm renders it, with the image by digest.
FBC=$OUT/catalog/stevedore
rm -rf "$OUT/catalog" && mkdir -p "$FBC"
csv=$(sed -n 's/^  name: \(stevedore\.v.*\)$/\1/p' bundle/manifests/stevedore.clusterserviceversion.yaml | head -1)
[[ -n $csv ]] || { log "no CSV name in bundle/manifests/stevedore.clusterserviceversion.yaml"; exit 1; }
cat >"$FBC/package.yaml" <<YAML
schema: olm.package
name: stevedore
defaultChannel: alpha
---
schema: olm.channel
package: stevedore
name: alpha
entries:
  - name: $csv
YAML
# opm renders a bundle directory with image: "" (its content inline, as
# olm.bundle.object properties); with an image, OLM unpacks that image
# instead, as it does for bundles in published catalogs.
"$STEVEDORE_OPM" render bundle -o yaml | sed "s|^image: \"\"\$|image: $BUNDLE_IMAGE|" >"$FBC/bundle.yaml"
grep -qx "image: $BUNDLE_IMAGE" "$FBC/bundle.yaml" || { log "opm render bundle: no image: \"\" line to set"; exit 1; }
"$STEVEDORE_OPM" validate "$OUT/catalog" >&2
# opm serves a catalog only with a cache that matches it (--cache-enforce-integrity).
rm -rf "$OUT/catalog-cache"
"$STEVEDORE_OPM" serve "$OUT/catalog" --cache-dir="$OUT/catalog-cache" --cache-only >&2

read -r ref file < <(go run ./hack/imagebuild -version "$VERSION" -out "$OUT" -only catalog \
	-catalog "$OUT/catalog" -catalog-cache "$OUT/catalog-cache")
"$BIN/cluster" load "$file" >&2
CATALOG_IMAGE=$(by_digest "$ref")
log "catalog image $CATALOG_IMAGE"

# The images the CSV names, from the ones built from this tree.
for img in $(sed -n 's/^ *- image: \(.*stevedore-\(manager\|agent\):.*\)$/\1/p' bundle/manifests/stevedore.clusterserviceversion.yaml); do
	case $img in
	*/stevedore-manager:*) built=${STEVEDORE_E2E_MANAGER_IMAGE:?the manager image hack/demo.sh imported} ;;
	*) built=${STEVEDORE_E2E_AGENT_IMAGE:?the agent image hack/demo.sh imported} ;;
	esac
	"${CTR[@]}" images tag --force "$built" "$img" >/dev/null
	log "$img is $built"
done

cat <<ENV
export STEVEDORE_E2E_OLM_IMAGE=$OLM_IMAGE
export STEVEDORE_E2E_OPM_IMAGE=$OPM_IMAGE
export STEVEDORE_E2E_OLM_BUNDLE_IMAGE=$BUNDLE_IMAGE
export STEVEDORE_E2E_OLM_CATALOG_IMAGE=$CATALOG_IMAGE
export STEVEDORE_OLM_CRDS=$STEVEDORE_OLM_CRDS
ENV
