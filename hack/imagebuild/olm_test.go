package main

import (
	"archive/tar"
	"bytes"
	"context"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
)

// readImage reads the image ref back from the docker-archive file and
// returns its config and flattened file system (name -> header, contents).
func readImage(t *testing.T, file, ref string) (*v1.ConfigFile, int, map[string]*tar.Header, map[string][]byte) {
	t.Helper()
	tag, err := name.NewTag(ref)
	if err != nil {
		t.Fatal(err)
	}
	img, err := tarball.ImageFromPath(file, &tag)
	if err != nil {
		t.Fatalf("reading %s back as %s: %v", file, ref, err)
	}
	cf, err := img.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	layers, err := img.Layers()
	if err != nil {
		t.Fatal(err)
	}
	hdrs, data := map[string]*tar.Header{}, map[string][]byte{}
	tr := tar.NewReader(mutate.Extract(img))
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		n := "/" + strings.TrimSuffix(h.Name, "/")
		hdrs[n] = h
		if h.Typeflag == tar.TypeReg && h.Size < 1<<20 {
			b, err := io.ReadAll(tr)
			if err != nil {
				t.Fatal(err)
			}
			data[n] = b
		}
	}
	return cf, len(layers), hdrs, data
}

// TestBundleImage builds the bundle image from the committed bundle/ and
// checks it the way bundle.Dockerfile builds it: scratch, the two
// directories, the annotations as labels.
func TestBundleImage(t *testing.T) {
	out := t.TempDir()
	bundleDir := filepath.Join("..", "..", "bundle")
	results, err := run(context.Background(), options{
		Out: out, Version: "dev", Only: []string{"bundle"}, BundleDir: bundleDir,
		Created: time.Unix(1700000000, 0).UTC(), Peers: map[string]string{},
	})
	if err != nil {
		t.Fatal(err)
	}
	const ref = "ghcr.io/stevedore-dev/stevedore-bundle:v0.1.0" // the CSV's version
	if len(results) != 1 || results[0].Ref.String() != ref {
		t.Fatalf("results %+v, want only %s", results, ref)
	}
	cf, nLayers, hdrs, data := readImage(t, results[0].File, ref)
	if nLayers != 1 {
		t.Errorf("%d layers, want 1 (FROM scratch)", nLayers)
	}
	if cf.Config.User != "" || len(cf.Config.Env) != 0 || len(cf.Config.Entrypoint) != 0 {
		t.Errorf("config user %q env %v entrypoint %v, want none", cf.Config.User, cf.Config.Env, cf.Config.Entrypoint)
	}
	for k, v := range map[string]string{
		"operators.operatorframework.io.bundle.mediatype.v1":       "registry+v1",
		"operators.operatorframework.io.bundle.manifests.v1":       "manifests/",
		"operators.operatorframework.io.bundle.metadata.v1":        "metadata/",
		"operators.operatorframework.io.bundle.package.v1":         "stevedore",
		"operators.operatorframework.io.bundle.channels.v1":        "alpha",
		"operators.operatorframework.io.bundle.channel.default.v1": "alpha",
	} {
		if cf.Config.Labels[k] != v {
			t.Errorf("label %s = %q, want %q", k, cf.Config.Labels[k], v)
		}
	}
	var want []string
	for _, d := range []string{"manifests", "metadata"} {
		entries, err := os.ReadDir(filepath.Join(bundleDir, d))
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range entries {
			want = append(want, "/"+d+"/"+e.Name())
		}
	}
	for _, p := range want {
		host, err := os.ReadFile(filepath.Join(bundleDir, strings.TrimPrefix(p, "/")))
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(data[p], host) {
			t.Errorf("%s in the image differs from bundle%s (%d vs %d bytes)", p, p, len(data[p]), len(host))
		}
	}
	var files []string
	for n, h := range hdrs {
		if h.Typeflag == tar.TypeReg {
			files = append(files, n)
		}
	}
	if len(files) != len(want) {
		t.Errorf("image files %v, want exactly %v", files, want)
	}
}

func TestBundleSpecErrors(t *testing.T) {
	const annotations = "annotations:\n  operators.operatorframework.io.bundle.mediatype.v1: registry+v1\n" +
		"  operators.operatorframework.io.bundle.manifests.v1: manifests/\n  operators.operatorframework.io.bundle.metadata.v1: metadata/\n"
	const csv = "kind: ClusterServiceVersion\nspec:\n  version: 1.2.3\n"
	for _, tc := range []struct {
		name  string
		files map[string]string
		want  string
	}{
		{"no annotations", map[string]string{"manifests/a.clusterserviceversion.yaml": csv}, "is not a bundle directory"},
		{"other mediatype", map[string]string{"metadata/annotations.yaml": strings.Replace(annotations, "registry+v1", "helm", 1)}, `is "helm", want registry+v1`},
		{"manifests elsewhere", map[string]string{"metadata/annotations.yaml": strings.Replace(annotations, "manifests/\n", "deploy/\n", 1)}, `manifests.v1 is "deploy/"`},
		{"no CSV", map[string]string{"metadata/annotations.yaml": annotations, "manifests/crd.yaml": "kind: CustomResourceDefinition\n"}, "0 *.clusterserviceversion.yaml files, want 1"},
		{"CSV without version", map[string]string{"metadata/annotations.yaml": annotations, "manifests/a.clusterserviceversion.yaml": "kind: ClusterServiceVersion\n"}, "not a ClusterServiceVersion with spec.version"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			for p, c := range tc.files {
				if err := os.MkdirAll(filepath.Dir(filepath.Join(dir, p)), 0o755); err != nil {
					t.Fatal(err)
				}
				if err := os.WriteFile(filepath.Join(dir, p), []byte(c), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			_, err := selectSpecs(options{Version: "dev", Registry: "ghcr.io/x", BundleDir: dir, Only: []string{"bundle"}})
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %v, want one containing %q", err, tc.want)
			}
		})
	}
	// A valid one for contrast: tag v<CSV version>.
	dir := t.TempDir()
	for p, c := range map[string]string{"metadata/annotations.yaml": annotations, "manifests/a.clusterserviceversion.yaml": csv} {
		_ = os.MkdirAll(filepath.Dir(filepath.Join(dir, p)), 0o755)
		if err := os.WriteFile(filepath.Join(dir, p), []byte(c), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	specs, err := selectSpecs(options{Version: "dev", Registry: "ghcr.io/x", BundleDir: dir, Only: []string{"bundle"}})
	if err != nil || len(specs) != 1 || specs[0].tag != "v1.2.3" || specs[0].registry != "ghcr.io/x" {
		t.Fatalf("specs %+v, %v: want one bundle spec ghcr.io/x/...:v1.2.3", specs, err)
	}
}

// staticBin builds the (tiny, static) pause program to path: the stand-in
// for a provisioned binary.
func staticBin(t *testing.T, path string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	build := exec.Command("go", "build", "-o", path, "./pause")
	build.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS=linux", "GOARCH=amd64")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build ./pause: %v\n%s", err, out)
	}
}

// TestOLMImages: the OLM image carries every program OLM's Jobs and pods
// run from it (cp included), the catalog image opm, the probe, the catalog
// at /configs and opm's cache owned by the image's user.
func TestOLMImages(t *testing.T) {
	dir := t.TempDir()
	olm := filepath.Join(dir, "olm-v0.28.0", "olm")
	staticBin(t, olm)
	for _, p := range olmPrograms {
		if err := os.Link(olm, filepath.Join(dir, "olm-v0.28.0", p)); err != nil {
			t.Fatal(err)
		}
	}
	opm := filepath.Join(dir, "opm-v1.55.0", "opm")
	staticBin(t, opm)
	if err := os.Link(opm, filepath.Join(dir, "opm-v1.55.0", "grpc_health_probe")); err != nil {
		t.Fatal(err)
	}
	t.Setenv(olmBusyboxEnv, olm) // any static binary will do for the layout
	catalog, cache := filepath.Join(dir, "catalog"), filepath.Join(dir, "cache")
	for p, c := range map[string]string{
		filepath.Join(catalog, "stevedore", "catalog.yaml"): "schema: olm.package\nname: stevedore\n",
		filepath.Join(cache, "pogreb.v1", "digest"):         "0123456789abcdef",
	} {
		_ = os.MkdirAll(filepath.Dir(p), 0o755)
		if err := os.WriteFile(p, []byte(c), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	out := t.TempDir()
	results, err := run(context.Background(), options{
		Out: out, Version: "v9", Only: []string{"olm", "opm", "catalog"},
		Peers:      map[string]string{"olm": olm, "opm": opm},
		CatalogDir: catalog, CatalogCache: cache,
	})
	if err != nil {
		t.Fatal(err)
	}
	refs := map[string]string{}
	for _, r := range results {
		refs[r.Key] = r.Ref.String()
		var aliases []string
		for _, a := range r.Aliases {
			aliases = append(aliases, a.String())
		}
		refs[r.Key+" aliases"] = strings.Join(aliases, ",")
	}
	for k, v := range map[string]string{
		"olm": "docker.io/library/stevedore-test-olm:v0.28.0", "olm aliases": "quay.io/operator-framework/olm:v0.28.0",
		"opm": "docker.io/library/stevedore-test-opm:v1.55.0", "opm aliases": "quay.io/operator-framework/opm:v1.55.0",
		"catalog": "docker.io/library/stevedore-test-catalog:v9", "catalog aliases": "",
	} {
		if got := refs[k]; got != v {
			t.Errorf("%s = %q, want %q", k, got, v)
		}
	}

	_, _, hdrs, _ := readImage(t, filepath.Join(out, "stevedore-test-olm.tar"), "docker.io/library/stevedore-test-olm:v0.28.0")
	for _, p := range []string{"/bin/olm", "/bin/catalog", "/bin/package-server", "/bin/copy-content", "/bin/cpb", "/bin/busybox"} {
		if h := hdrs[p]; h == nil || h.Typeflag != tar.TypeReg || h.Mode&0o111 == 0 {
			t.Errorf("OLM image: %s missing or not executable", p)
		}
	}
	if h := hdrs["/bin/cp"]; h == nil || h.Typeflag != tar.TypeSymlink || h.Linkname != "busybox" {
		t.Errorf("OLM image: /bin/cp is %+v, want a symlink to busybox (the unpack Job runs /bin/cp -Rv /bin/cpb /util/cpb)", h)
	}

	cf, _, hdrs, data := readImage(t, filepath.Join(out, "stevedore-test-catalog.tar"), "docker.io/library/stevedore-test-catalog:v9")
	if got := strings.Join(append(cf.Config.Entrypoint, cf.Config.Cmd...), " "); got != "/bin/opm serve /configs --cache-dir=/tmp/cache" {
		t.Errorf("catalog command %q", got)
	}
	if cf.Config.Labels[configsLabel] != "/configs" {
		t.Errorf("label %s = %q, want /configs", configsLabel, cf.Config.Labels[configsLabel])
	}
	if string(data["/configs/stevedore/catalog.yaml"]) != "schema: olm.package\nname: stevedore\n" {
		t.Errorf("/configs/stevedore/catalog.yaml = %q", data["/configs/stevedore/catalog.yaml"])
	}
	for _, p := range []string{"/tmp/cache", "/tmp/cache/pogreb.v1", "/tmp/cache/pogreb.v1/digest"} {
		if h := hdrs[p]; h == nil || h.Uid != nonrootUID {
			t.Errorf("catalog image: %s missing or not owned by %d: %+v", p, nonrootUID, h)
		}
	}
	if h := hdrs["/tmp"]; h == nil || h.Mode&0o1777 != 0o1777 {
		t.Errorf("catalog image: /tmp is %+v, want mode 1777", h)
	}
	for _, p := range []string{"/bin/opm", "/bin/grpc_health_probe", "/etc/nsswitch.conf"} {
		if hdrs[p] == nil {
			t.Errorf("catalog image: no %s", p)
		}
	}

	// Without its cache or opm, the catalog image is refused with a hint.
	for _, tc := range []struct {
		name string
		opts options
		want string
	}{
		{"no cache", options{Version: "v9", Peers: map[string]string{"opm": opm}, CatalogDir: catalog}, "--cache-only"},
		{"no opm", options{Version: "v9", Peers: map[string]string{}, CatalogDir: catalog, CatalogCache: cache}, "needs the opm binary"},
		{"empty catalog", options{Version: "v9", Peers: map[string]string{"opm": opm}, CatalogDir: t.TempDir(), CatalogCache: cache}, "holds no file-based catalog files"},
	} {
		if _, err := selectSpecs(tc.opts); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: error %v, want one containing %q", tc.name, err, tc.want)
		}
	}
	// cp comes from busybox: without it the OLM image is refused.
	t.Setenv(olmBusyboxEnv, filepath.Join(dir, "nonexistent"))
	if _, err := selectSpecs(options{Version: "v9", Peers: map[string]string{"olm": olm}, Only: []string{"olm"}}); err == nil || !strings.Contains(err.Error(), "busybox for /bin/cp") {
		t.Errorf("OLM image without busybox: error %v", err)
	}
}
