package main

import (
	"archive/tar"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
)

// extracted is one regular file or directory of the flattened image.
type extracted struct {
	hdr  *tar.Header
	data []byte // contents of small files; the agent binary goes to a file
}

// TestAgentImage builds the agent image once (go build of ./cmd/agent included)
// and checks it from the tarball, read back the way a runtime would.
func TestAgentImage(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the agent binary; skipped with -short")
	}
	const version = "v0.0.0-imagebuild-test"
	out := t.TempDir()
	var logBuf bytes.Buffer
	results, err := run(context.Background(), options{
		Out:     out,
		Version: version,
		Only:    []string{"agent"},
		Created: time.Unix(1700000000, 0).UTC(),
		Log:     &logBuf,
	})
	if err != nil {
		t.Fatalf("run: %v\n%s", err, logBuf.String())
	}
	if len(results) != 1 || results[0].Key != "agent" {
		t.Fatalf("results = %+v, want only the agent", results)
	}
	wantFile := filepath.Join(out, "stevedore-agent.tar")
	wantRef := "ghcr.io/stevedore-dev/stevedore-agent:" + version
	if results[0].File != wantFile || results[0].Ref.String() != wantRef {
		t.Fatalf("wrote %s as %s, want %s as %s", results[0].File, results[0].Ref, wantFile, wantRef)
	}
	if leftovers, _ := filepath.Glob(filepath.Join(out, ".*")); len(leftovers) > 0 {
		t.Errorf("temporary files left behind: %v", leftovers)
	}

	// Read the tarball back by the reference in its manifest.json (RepoTags),
	// which is what `docker load` and `ctr images import` go by.
	tag, err := name.NewTag(wantRef)
	if err != nil {
		t.Fatal(err)
	}
	img, err := tarball.ImageFromPath(wantFile, &tag)
	if err != nil {
		t.Fatalf("reading %s back as %s: %v", wantFile, wantRef, err)
	}
	cf, err := img.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}

	t.Run("config", func(t *testing.T) {
		if got := cf.OS + "/" + cf.Architecture; got != "linux/amd64" {
			t.Errorf("platform = %s, want linux/amd64", got)
		}
		if cf.Config.User != "65532:65532" {
			t.Errorf("user = %q, want 65532:65532", cf.Config.User)
		}
		if !slices.Equal(cf.Config.Entrypoint, []string{"/agent"}) {
			t.Errorf("entrypoint = %q, want [/agent]", cf.Config.Entrypoint)
		}
		if cf.Config.WorkingDir != "/" {
			t.Errorf("working dir = %q, want /", cf.Config.WorkingDir)
		}
		for k, want := range map[string]string{
			"org.opencontainers.image.title":   "stevedore-agent",
			"org.opencontainers.image.version": version,
			"org.opencontainers.image.source":  defaultSource,
		} {
			if got := cf.Config.Labels[k]; got != want {
				t.Errorf("label %s = %q, want %q", k, got, want)
			}
		}
		if !cf.Created.Equal(time.Unix(1700000000, 0)) {
			t.Errorf("created = %v, want SOURCE_DATE_EPOCH 1700000000", cf.Created)
		}
		layers, err := img.Layers()
		if err != nil || len(layers) != 2 {
			t.Errorf("layers = %d (%v), want base + agent", len(layers), err)
		}
	})

	files := map[string]extracted{}
	agentBin := filepath.Join(t.TempDir(), "agent")
	rc := mutate.Extract(img)
	defer func() { _ = rc.Close() }()
	tr := tar.NewReader(rc)
	for {
		hdr, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatalf("reading the image file system: %v", err)
		}
		p := "/" + strings.Trim(strings.TrimPrefix(hdr.Name, "./"), "/")
		e := extracted{hdr: hdr}
		switch {
		case p == "/agent" && hdr.Typeflag == tar.TypeReg:
			f, err := os.OpenFile(agentBin, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o755)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := io.Copy(f, tr); err != nil {
				t.Fatal(err)
			}
			if err := f.Close(); err != nil {
				t.Fatal(err)
			}
		case hdr.Typeflag == tar.TypeReg && hdr.Size < 1<<20:
			if e.data, err = io.ReadAll(tr); err != nil {
				t.Fatal(err)
			}
		}
		files[p] = e
	}

	t.Run("files", func(t *testing.T) {
		agent, ok := files["/agent"]
		switch {
		case !ok:
			t.Error("/agent missing")
		case agent.hdr.Typeflag != tar.TypeReg || agent.hdr.Mode&0o111 != 0o111:
			t.Errorf("/agent: type %c mode %o, want an executable regular file", agent.hdr.Typeflag, agent.hdr.Mode)
		}
		passwd := string(files["/etc/passwd"].data)
		if !strings.Contains(passwd, "\nnonroot:x:65532:65532:") {
			t.Errorf("/etc/passwd has no nonroot 65532 user:\n%s", passwd)
		}
		if group := string(files["/etc/group"].data); !strings.Contains(group, "\nnonroot:x:65532:") {
			t.Errorf("/etc/group has no nonroot 65532 group:\n%s", group)
		}
		host, err := os.ReadFile(defaultCA)
		if err != nil {
			t.Fatal(err)
		}
		if ca := files["/etc/ssl/certs/ca-certificates.crt"].data; len(ca) == 0 || !bytes.Equal(ca, host) {
			t.Errorf("CA bundle: %d bytes, want the host's %d bytes", len(ca), len(host))
		}
		if tmp, ok := files["/tmp"]; !ok || tmp.hdr.Typeflag != tar.TypeDir || tmp.hdr.Mode&0o7777 != 0o1777 {
			t.Errorf("/tmp missing or not a 1777 directory: %+v", tmp.hdr)
		}
		if home, ok := files["/home/nonroot"]; !ok || home.hdr.Uid != 65532 || home.hdr.Gid != 65532 {
			t.Errorf("/home/nonroot missing or not owned by 65532: %+v", home.hdr)
		}
	})

	t.Run("agent runs", func(t *testing.T) {
		if _, ok := files["/agent"]; !ok {
			t.Skip("no /agent")
		}
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		outb, err := exec.CommandContext(ctx, agentBin, "version").CombinedOutput()
		if err != nil {
			t.Fatalf("agent version: %v\n%s", err, outb)
		}
		if got, want := strings.TrimSpace(string(outb)), "agent "+version; got != want {
			t.Errorf("agent version printed %q, want %q", got, want)
		}
	})
}

func TestSanitizeTag(t *testing.T) {
	for in, want := range map[string]string{
		"v1.2.3":                 "v1.2.3",
		"40d5e05-dirty":          "40d5e05-dirty",
		"v1.2.3+build.5":         "v1.2.3-build.5",
		"-x":                     "v-x",
		"feature/branch":         "feature-branch",
		strings.Repeat("a", 200): strings.Repeat("a", 128),
	} {
		if got := sanitizeTag(in); got != want {
			t.Errorf("sanitizeTag(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestPeerTag(t *testing.T) {
	for _, c := range []struct{ key, bin, want string }{
		{"prometheus", "/c/stevedore/prometheus-v0.315.0/prometheus", "v0.315.0"},
		{"minio", "/c/stevedore/minio-v0.0.0-20260212201848-7aac2a2c5b7c/minio", "v0.0.0-20260212201848-7aac2a2c5b7c"},
		{"thanos", "/usr/local/bin/thanos", "local"},
	} {
		if got := peerTag(c.key, c.bin); got != c.want {
			t.Errorf("peerTag(%q, %q) = %q, want %q", c.key, c.bin, got, c.want)
		}
	}
}

func TestSelectSpecs(t *testing.T) {
	opts := options{Version: "dev", Peers: map[string]string{}}
	specs, err := selectSpecs(opts)
	if err != nil {
		t.Fatal(err)
	}
	var keys []string
	for _, s := range specs {
		keys = append(keys, s.key)
	}
	if !slices.Equal(keys, []string{"manager", "agent", "pause"}) {
		t.Errorf("default images without peer binaries = %v", keys)
	}
	if _, err := selectSpecs(options{Version: "dev", Only: []string{"thanos"}}); err == nil || !strings.Contains(err.Error(), "STEVEDORE_THANOS") {
		t.Errorf("-only thanos without a binary: err = %v, want a hint at $STEVEDORE_THANOS", err)
	}
	if _, err := selectSpecs(options{Version: "dev", Only: []string{"grafana"}}); err == nil {
		t.Error("-only with an unknown image: no error")
	}
	// Peers must be static: the base has no libc.
	if sh, err := exec.LookPath("sh"); err == nil {
		if err := checkStaticBinary(sh); err == nil {
			t.Errorf("checkStaticBinary(%s) accepted a dynamically linked binary", sh)
		}
	}
}

func TestUpstreamReferences(t *testing.T) {
	for _, c := range []struct {
		name string
		fn   func(string) string
		tag  string
		want string
	}{
		{"prometheus 3.15.0", prometheusUpstream, "v0.315.0", "quay.io/prometheus/prometheus:v3.15.0"},
		{"prometheus 3.5.2", prometheusUpstream, "v0.305.2", "quay.io/prometheus/prometheus:v3.5.2"},
		{"prometheus built without SD plugins", prometheusUpstream, "v0.315.0-nosd", "quay.io/prometheus/prometheus:v3.15.0"},
		{"prometheus other suffix", prometheusUpstream, "v0.315.0-rc.0", ""},
		{"prometheus from elsewhere", prometheusUpstream, "local", ""},
		{"prometheus 2.x module version", prometheusUpstream, "v2.53.0", ""},
		{"minio pseudo-version", minioUpstream, "v0.0.0-20260212201848-7aac2a2c5b7c", "quay.io/minio/minio:RELEASE.2026-02-12T20-18-48Z"},
		{"minio from elsewhere", minioUpstream, "local", ""},
	} {
		t.Run(c.name, func(t *testing.T) {
			if got := c.fn(c.tag); got != c.want {
				t.Errorf("upstream(%q) = %q, want %q", c.tag, got, c.want)
			}
		})
	}
}

// TestSelectSpecsPeers: each provisioned peer gets its tag and its upstream
// reference; manager and agent the release registry.
func TestSelectSpecsPeers(t *testing.T) {
	dir := t.TempDir()
	bins := map[string]string{}
	for key, cacheDir := range map[string]string{
		"prometheus":             "prometheus-v0.315.0-nosd",
		"minio":                  "minio-v0.0.0-20260212201848-7aac2a2c5b7c",
		"local-path-provisioner": "local-path-provisioner-v0.0.30",
	} {
		bins[key] = filepath.Join(dir, cacheDir, key)
	}
	// checkStaticBinary wants a static amd64 ELF: the (tiny) pause program.
	self := filepath.Join(dir, "pause")
	build := exec.Command("go", "build", "-o", self, "./pause")
	build.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS=linux", "GOARCH=amd64")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build ./pause: %v\n%s", err, out)
	}
	for _, b := range bins {
		if err := os.MkdirAll(filepath.Dir(b), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.Symlink(self, b); err != nil {
			t.Fatal(err)
		}
	}
	specs, err := selectSpecs(options{Version: "v1.2.3", Registry: "registry.example.com/team", Peers: bins})
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]string{}
	for _, s := range specs {
		got[s.key] = s.registry + " " + s.tag + " " + strings.Join(s.aliases, ",")
	}
	want := map[string]string{
		"manager":                "registry.example.com/team v1.2.3 ",
		"agent":                  "registry.example.com/team v1.2.3 ",
		"pause":                  " v1 ",
		"prometheus":             " v0.315.0-nosd quay.io/prometheus/prometheus:v3.15.0",
		"minio":                  " v0.0.0-20260212201848-7aac2a2c5b7c quay.io/minio/minio:RELEASE.2026-02-12T20-18-48Z",
		"local-path-provisioner": " v0.0.30 docker.io/rancher/local-path-provisioner:v0.0.30",
	}
	for k, w := range want {
		if got[k] != w {
			t.Errorf("%s: registry, tag, aliases = %q, want %q", k, got[k], w)
		}
	}
	if _, err := selectSpecs(options{Version: "v1", Registry: "ghcr.io/x/"}); err == nil {
		t.Error("registry with a trailing slash: no error")
	}
}

func TestBusyboxTag(t *testing.T) {
	fake := filepath.Join(t.TempDir(), "busybox")
	if err := os.WriteFile(fake, []byte("#!/bin/sh\necho 'BusyBox v1.35.0 (Debian 1:1.35.0-4+b3) multi-call binary.'\nexit 1\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	notBusybox := filepath.Join(t.TempDir(), "sh")
	if err := os.WriteFile(notBusybox, []byte("#!/bin/sh\necho usage: sh\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	if got, err := busyboxTag(fake); err != nil || got != "1.35.0" {
		t.Errorf("busyboxTag(banner 1.35.0) = %q, %v; want 1.35.0", got, err)
	}
	if _, err := busyboxTag(notBusybox); err == nil || !strings.Contains(err.Error(), "BusyBox") {
		t.Errorf("busyboxTag(no banner): err = %v, want one naming the missing banner", err)
	}
	// The real one, when Debian's busybox-static is installed.
	if _, err := os.Stat("/bin/busybox"); err == nil {
		if got, err := busyboxTag("/bin/busybox"); err != nil || !regexp.MustCompile(`^[0-9]+\.[0-9]+\.[0-9]+$`).MatchString(got) {
			t.Errorf("busyboxTag(/bin/busybox) = %q, %v", got, err)
		}
	}
}

// TestMultiTagTarball: one tarball, read back by each of its references,
// byte-identical when written twice, with symbolic links intact.
func TestMultiTagTarball(t *testing.T) {
	dir := t.TempDir()
	l := newLayer()
	l.file("/bin/busybox", 0o755, []byte("not really busybox"))
	l.symlink("/bin/sh", "busybox")
	created := time.Unix(1700000000, 0).UTC()
	layer, err := l.write(filepath.Join(dir, "layer.tar.gz"), created)
	if err != nil {
		t.Fatal(err)
	}
	img, err := mutate.AppendLayers(empty.Image, layer)
	if err != nil {
		t.Fatal(err)
	}
	var refs []name.Tag
	for _, r := range []string{"docker.io/library/stevedore-test-busybox:1.35.0", "docker.io/library/busybox:1.35.0", "quay.io/x/y:v1"} {
		tag, err := name.NewTag(r)
		if err != nil {
			t.Fatal(err)
		}
		refs = append(refs, tag)
	}
	var files [2][]byte
	for i := range files {
		p := filepath.Join(dir, fmt.Sprintf("img%d.tar", i))
		if err := writeTarball(p, refs, img); err != nil {
			t.Fatal(err)
		}
		if files[i], err = os.ReadFile(p); err != nil {
			t.Fatal(err)
		}
	}
	if !bytes.Equal(files[0], files[1]) {
		t.Error("two writes of the same image differ")
	}
	p := filepath.Join(dir, "img0.tar")
	m, err := tarball.LoadManifest(func() (io.ReadCloser, error) { return os.Open(p) })
	if err != nil {
		t.Fatal(err)
	}
	if len(m) != 1 || !slices.Equal(m[0].RepoTags, []string{refs[0].String(), refs[1].String(), refs[2].String()}) {
		t.Fatalf("manifest.json = %+v, want one image with the three tags in order", m)
	}
	want, err := img.Digest()
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range refs {
		got, err := tarball.ImageFromPath(p, &r)
		if err != nil {
			t.Fatalf("read back as %s: %v", r, err)
		}
		if d, err := got.Digest(); err != nil || d != want {
			t.Errorf("%s: digest %v (%v), want %v", r, d, err, want)
		}
	}
	rc := mutate.Extract(img)
	defer func() { _ = rc.Close() }()
	tr := tar.NewReader(rc)
	var link *tar.Header
	for {
		hdr, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		if hdr.Name == "bin/sh" {
			link = hdr
		}
	}
	if link == nil || link.Typeflag != tar.TypeSymlink || link.Linkname != "busybox" {
		t.Errorf("bin/sh = %+v, want a symbolic link to busybox", link)
	}
}
