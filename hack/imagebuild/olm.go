package main

import (
	"fmt"
	"io/fs"
	"os"
	"path"
	"path/filepath"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"sigs.k8s.io/yaml"
)

// The images that install Stevedore from its OLM bundle on the local cluster
// (test/e2e/olm_test.go), which reaches no registry:
//
//	stevedore-test-olm  OLM's programs (hack/testbin.sh olm): /bin/olm, /bin/catalog,
//	                    /bin/package-server, /bin/copy-content, /bin/cpb, and /bin/cp
//	                    (busybox), which OLM's bundle unpack Job runs in this image
//	                    (`/bin/cp -Rv /bin/cpb /util/cpb`); also quay.io/operator-framework/olm:<tag>
//	stevedore-test-opm  /bin/opm and /bin/grpc_health_probe (hack/testbin.sh opm): the
//	                    unpack Job's `opm alpha bundle extract`; also quay.io/operator-framework/opm:<tag>
//	<registry>/stevedore-bundle:v<CSV version>
//	                    (-bundle DIR) the bundle image as bundle.Dockerfile builds it: FROM
//	                    scratch, DIR/manifests and DIR/metadata at /manifests and /metadata,
//	                    the labels of DIR/metadata/annotations.yaml
//	stevedore-test-catalog:<-version>
//	                    (-catalog DIR -catalog-cache CACHE) a file-based catalog image as
//	                    operator-registry's example Dockerfile builds it: the opm image with
//	                    DIR at /configs and its cache (`opm serve DIR --cache-dir=CACHE
//	                    --cache-only`) at /tmp/cache, `opm serve /configs --cache-dir=/tmp/cache`,
//	                    port 50051 (the probe OLM puts on catalog pods runs grpc_health_probe
//	                    from PATH); opm refuses to serve without a cache that matches /configs

const (
	olmBusyboxEnv = "STEVEDORE_BUSYBOX"
	bundleRepo    = "stevedore-bundle"
	catalogRepo   = "stevedore-test-catalog"
	configsLabel  = "operators.operatorframework.io.index.configs.v1"
	nsswitchConf  = "hosts: files dns\n" // as operator-registry's images
)

// olmPrograms are the binaries next to $STEVEDORE_OLM (the olm binary) that
// the OLM image carries in /bin.
var olmPrograms = []string{"catalog", "package-server", "copy-content", "cpb"}

var olmPeer = peerDef{
	key: "olm", env: "STEVEDORE_OLM", binPath: "/bin/olm",
	source:      "https://github.com/operator-framework/operator-lifecycle-manager",
	description: "Operator Lifecycle Manager: olm, catalog, package-server, copy-content, cpb (Stevedore test peer)",
	config:      v1.Config{Entrypoint: []string{"/bin/olm"}},
	files: func(bin string) (map[string]string, error) {
		files, err := siblings(bin, olmPrograms)
		if err != nil {
			return nil, err
		}
		bb := os.Getenv(olmBusyboxEnv)
		if bb == "" {
			bb = "/bin/busybox"
		}
		if _, err := os.Stat(bb); err != nil {
			return nil, fmt.Errorf("busybox for /bin/cp: %w (install it: eval \"$(hack/testbin.sh busybox)\")", err)
		}
		files["/bin/busybox"] = bb
		return files, nil
	},
	extra:    func(l *layerBuilder) { l.symlink("/bin/cp", "busybox") },
	upstream: func(tag string) string { return "quay.io/operator-framework/olm:" + tag },
}

var opmPeer = peerDef{
	key: "opm", env: "STEVEDORE_OPM", binPath: "/bin/opm",
	source:      "https://github.com/operator-framework/operator-registry",
	description: "operator-registry's opm and grpc_health_probe (Stevedore test peer)",
	config:      v1.Config{Entrypoint: []string{"/bin/opm"}, ExposedPorts: ports("50051/tcp")},
	files: func(bin string) (map[string]string, error) {
		return siblings(bin, []string{"grpc_health_probe"})
	},
	extra:    func(l *layerBuilder) { l.file("/etc/nsswitch.conf", 0o644, []byte(nsswitchConf)) },
	upstream: func(tag string) string { return "quay.io/operator-framework/opm:" + tag },
}

// siblings maps /bin/<name> to the file <name> next to bin, for each name.
func siblings(bin string, names []string) (map[string]string, error) {
	files := map[string]string{}
	for _, n := range names {
		p := filepath.Join(filepath.Dir(bin), n)
		if _, err := os.Stat(p); err != nil {
			return nil, fmt.Errorf("%s is not next to %s: %w", n, bin, err)
		}
		files["/bin/"+n] = p
	}
	return files, nil
}

// olmSpecs returns the bundle image spec (with opts.BundleDir) and the
// catalog image spec (with opts.CatalogDir and the opm binary).
func olmSpecs(opts options) ([]imageSpec, error) {
	var specs []imageSpec
	if opts.BundleDir != "" {
		s, err := bundleSpec(opts)
		if err != nil {
			return nil, fmt.Errorf("bundle image: %w", err)
		}
		specs = append(specs, s)
	}
	if opts.CatalogDir != "" {
		s, err := catalogSpec(opts)
		if err != nil {
			return nil, fmt.Errorf("catalog image: %w", err)
		}
		specs = append(specs, s)
	}
	return specs, nil
}

func bundleSpec(opts options) (imageSpec, error) {
	dir := opts.BundleDir
	raw, err := os.ReadFile(filepath.Join(dir, "metadata", "annotations.yaml"))
	if err != nil {
		return imageSpec{}, fmt.Errorf("%s is not a bundle directory: %w", dir, err)
	}
	var ann struct {
		Annotations map[string]string `json:"annotations"`
	}
	if err := yaml.Unmarshal(raw, &ann); err != nil {
		return imageSpec{}, fmt.Errorf("%s/metadata/annotations.yaml: %w", dir, err)
	}
	const mediatype = "operators.operatorframework.io.bundle.mediatype.v1"
	if ann.Annotations[mediatype] != "registry+v1" {
		return imageSpec{}, fmt.Errorf("%s/metadata/annotations.yaml: %s is %q, want registry+v1", dir, mediatype, ann.Annotations[mediatype])
	}
	for _, k := range []string{"manifests", "metadata"} {
		if got := ann.Annotations["operators.operatorframework.io.bundle."+k+".v1"]; got != k+"/" {
			return imageSpec{}, fmt.Errorf("%s/metadata/annotations.yaml: operators.operatorframework.io.bundle.%s.v1 is %q, want %s/", dir, k, got, k)
		}
	}
	csvVersion, err := bundleCSVVersion(filepath.Join(dir, "manifests"))
	if err != nil {
		return imageSpec{}, err
	}
	l := newLayer()
	for _, k := range []string{"manifests", "metadata"} {
		if err := addTree(l, filepath.Join(dir, k), "/"+k, 0); err != nil {
			return imageSpec{}, err
		}
	}
	tag := sanitizeTag("v" + csvVersion)
	return imageSpec{
		key: "bundle", repo: bundleRepo, tag: tag, version: tag, source: opts.Source, registry: opts.Registry,
		title: bundleRepo, description: "Stevedore OLM bundle (registry+v1)",
		scratch: true, labels: ann.Annotations,
		extra: func(dst *layerBuilder) { copyEntries(dst, l) },
	}, nil
}

// bundleCSVVersion is spec.version of the one ClusterServiceVersion in dir.
func bundleCSVVersion(dir string) (string, error) {
	matches, err := filepath.Glob(filepath.Join(dir, "*.clusterserviceversion.yaml"))
	if err != nil {
		return "", err
	}
	if len(matches) != 1 {
		return "", fmt.Errorf("%s: %d *.clusterserviceversion.yaml files, want 1", dir, len(matches))
	}
	raw, err := os.ReadFile(matches[0])
	if err != nil {
		return "", err
	}
	var csv struct {
		Kind string `json:"kind"`
		Spec struct {
			Version string `json:"version"`
		} `json:"spec"`
	}
	if err := yaml.Unmarshal(raw, &csv); err != nil {
		return "", fmt.Errorf("%s: %w", matches[0], err)
	}
	if csv.Kind != "ClusterServiceVersion" || csv.Spec.Version == "" {
		return "", fmt.Errorf("%s: not a ClusterServiceVersion with spec.version", matches[0])
	}
	return csv.Spec.Version, nil
}

func catalogSpec(opts options) (imageSpec, error) {
	opm := opts.Peers["opm"]
	if opm == "" {
		return imageSpec{}, fmt.Errorf("needs the opm binary: pass -opm PATH or set $%s (eval \"$(hack/testbin.sh opm)\")", opmPeer.env)
	}
	files, err := opmPeer.files(opm)
	if err != nil {
		return imageSpec{}, err
	}
	l := newLayer()
	if err := addTree(l, opts.CatalogDir, "/configs", 0); err != nil {
		return imageSpec{}, err
	}
	hasFile := false
	for _, e := range l.entries {
		hasFile = hasFile || !e.dir
	}
	if !hasFile {
		return imageSpec{}, fmt.Errorf("%s holds no file-based catalog files", opts.CatalogDir)
	}
	if opts.CatalogCache == "" {
		return imageSpec{}, fmt.Errorf("-catalog-cache: missing; build it with opm serve %s --cache-dir=CACHE --cache-only", opts.CatalogDir)
	}
	// opm opens its cache read-write (a lock file): the image's user owns
	// it. /tmp stays as in the base layer.
	l.dir("/tmp", 0o1777, 0, 0)
	if err := addTree(l, opts.CatalogCache, "/tmp/cache", nonrootUID); err != nil {
		return imageSpec{}, fmt.Errorf("-catalog-cache: %w", err)
	}
	tag := sanitizeTag(opts.Version)
	return imageSpec{
		key: "catalog", repo: catalogRepo, tag: tag, version: opts.Version, source: opts.Source,
		title: catalogRepo, description: "File-based OLM catalog of Stevedore served by opm (Stevedore test peer)",
		hostBin: opm, binPath: opmPeer.binPath, files: files,
		labels: map[string]string{configsLabel: "/configs"},
		extra: func(dst *layerBuilder) {
			opmPeer.extra(dst)
			copyEntries(dst, l)
		},
		config: v1.Config{
			Entrypoint:   []string{"/bin/opm"},
			Cmd:          []string{"serve", "/configs", "--cache-dir=/tmp/cache"},
			ExposedPorts: ports("50051/tcp"),
		},
	}, nil
}

// addTree adds the regular files and directories under host to l at the
// image path at (files 0644, directories 0755), owned by uid (and the
// group of the same number).
func addTree(l *layerBuilder, host, at string, uid int) error {
	st, err := os.Stat(host)
	if err != nil {
		return err
	}
	if !st.IsDir() {
		return fmt.Errorf("%s: not a directory", host)
	}
	return filepath.WalkDir(host, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(host, p)
		if err != nil {
			return err
		}
		name := path.Join(at, filepath.ToSlash(rel))
		switch {
		case d.IsDir():
			l.dir(name, 0o755, uid, uid)
		case d.Type().IsRegular():
			l.add(entry{name: name, mode: 0o644, uid: uid, gid: uid, hostPath: p})
		default:
			return fmt.Errorf("%s: not a regular file or directory", p)
		}
		return nil
	})
}

func copyEntries(dst, src *layerBuilder) {
	for _, e := range src.entries {
		dst.add(e)
	}
}
