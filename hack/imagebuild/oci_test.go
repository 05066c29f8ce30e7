package main

import (
	"archive/tar"
	"bytes"
	"context"
	"crypto/sha256"
	"debug/elf"
	"encoding/hex"
	"errors"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/types"
	"github.com/google/go-containerregistry/pkg/v1/validate"
)

func TestParsePlatforms(t *testing.T) {
	for _, c := range []struct {
		name    string
		in      []string
		want    []string
		wantErr string
	}{
		{name: "default", in: nil, want: []string{"linux/amd64"}},
		{name: "amd64", in: []string{"linux/amd64"}, want: []string{"linux/amd64"}},
		{name: "arm64 only", in: []string{"linux/arm64"}, want: []string{"linux/arm64"}},
		{name: "both, sorted", in: []string{"linux/arm64", " linux/amd64"}, want: []string{"linux/amd64", "linux/arm64"}},
		{name: "unknown arch", in: []string{"linux/amd64", "linux/riscv"}, wantErr: `unknown platform "linux/riscv" (supported: linux/amd64,linux/arm64)`},
		{name: "unknown os", in: []string{"windows/amd64"}, wantErr: `unknown platform "windows/amd64"`},
		{name: "arch without os", in: []string{"arm64"}, wantErr: `unknown platform "arm64"`},
		{name: "empty entry", in: []string{"linux/amd64", ""}, wantErr: "empty entry"},
		{name: "twice", in: []string{"linux/arm64", "linux/arm64"}, wantErr: "linux/arm64 listed twice"},
	} {
		t.Run(c.name, func(t *testing.T) {
			got, err := parsePlatforms(c.in)
			if c.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), c.wantErr) {
					t.Fatalf("parsePlatforms(%q) = %v, %v; want an error containing %q", c.in, got, err, c.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			var names []string
			for _, p := range got {
				names = append(names, p.String())
			}
			if !slices.Equal(names, c.want) {
				t.Errorf("parsePlatforms(%q) = %v, want %v", c.in, names, c.want)
			}
		})
	}
}

// TestRunRejects: bad -format / -platforms combinations fail before anything
// is built or written.
func TestRunRejects(t *testing.T) {
	for _, c := range []struct {
		name    string
		opts    options
		wantErr string
	}{
		{name: "unknown format", opts: options{Format: "tar"}, wantErr: `-format "tar": want docker or oci`},
		{name: "unknown platform", opts: options{Format: formatOCI, Platforms: []string{"linux/s390"}}, wantErr: `unknown platform "linux/s390"`},
		{name: "docker with two platforms", opts: options{Platforms: []string{"linux/amd64", "linux/arm64"}}, wantErr: "use -format oci"},
		{
			name:    "test peer for arm64",
			opts:    options{Format: formatOCI, Platforms: []string{"linux/amd64", "linux/arm64"}, Only: []string{"manager", "prometheus"}, Peers: map[string]string{"prometheus": "/nonexistent/prometheus-v0.315.0/prometheus"}},
			wantErr: "image prometheus is made from a host-provided linux/amd64 binary and cannot be built for linux/arm64",
		},
		{
			name:    "test peer given by default for arm64",
			opts:    options{Format: formatOCI, Platforms: []string{"linux/arm64"}, Peers: map[string]string{"thanos": "/nonexistent/thanos"}},
			wantErr: "-only manager,agent",
		},
	} {
		t.Run(c.name, func(t *testing.T) {
			out := filepath.Join(t.TempDir(), "images")
			c.opts.Out = out
			c.opts.Version = "v1.0.0"
			results, err := run(context.Background(), c.opts)
			if err == nil || !strings.Contains(err.Error(), c.wantErr) {
				t.Fatalf("run = %v, %v; want an error containing %q", results, err, c.wantErr)
			}
			if _, err := os.Stat(out); !errors.Is(err, os.ErrNotExist) {
				t.Errorf("%s was created (%v); want nothing written", out, err)
			}
		})
	}
}

// TestDockerFormatExplicit: -format docker -platforms linux/amd64 is the
// default, byte for byte.
func TestDockerFormatExplicit(t *testing.T) {
	created := time.Unix(1700000000, 0).UTC()
	var files [2][]byte
	for i, o := range []options{
		{},
		{Format: formatDocker, Platforms: []string{"linux/amd64"}},
	} {
		o.Out = t.TempDir()
		o.Version = "v1.0.0"
		o.Only = []string{"pause"}
		o.Created = created
		results, err := run(context.Background(), o)
		if err != nil {
			t.Fatal(err)
		}
		if len(results) != 1 || filepath.Base(results[0].File) != "stevedore-pause.tar" {
			t.Fatalf("results = %+v, want stevedore-pause.tar", results)
		}
		if files[i], err = os.ReadFile(results[0].File); err != nil {
			t.Fatal(err)
		}
	}
	if !bytes.Equal(files[0], files[1]) {
		t.Error("-format docker -platforms linux/amd64 differs from the default")
	}
}

// TestOCIArchive builds the (tiny) pause image for linux/amd64 and
// linux/arm64 as an OCI archive and reads it back as an OCI image layout.
func TestOCIArchive(t *testing.T) {
	if testing.Short() {
		t.Skip("cross-builds a binary for linux/arm64; skipped with -short")
	}
	created := time.Unix(1700000000, 0).UTC()
	build := func(t *testing.T, platforms ...string) result {
		t.Helper()
		var logBuf bytes.Buffer
		results, err := run(context.Background(), options{
			Out:       t.TempDir(),
			Version:   "v1.0.0",
			Only:      []string{"pause"},
			Format:    formatOCI,
			Platforms: platforms,
			Created:   created,
			Log:       &logBuf,
		})
		if err != nil {
			t.Fatalf("run: %v\n%s", err, logBuf.String())
		}
		if len(results) != 1 {
			t.Fatalf("results = %+v, want only pause", results)
		}
		return results[0]
	}
	r := build(t, "linux/amd64", "linux/arm64")
	const wantRef = "docker.io/library/stevedore-pause:v1"
	if r.Ref.String() != wantRef || filepath.Base(r.File) != "stevedore-pause-v1.oci.tar" {
		t.Fatalf("wrote %s as %s, want stevedore-pause-v1.oci.tar as %s", r.File, r.Ref, wantRef)
	}
	if leftovers, _ := filepath.Glob(filepath.Join(filepath.Dir(r.File), ".*")); len(leftovers) > 0 {
		t.Errorf("temporary files left behind: %v", leftovers)
	}
	archive, err := os.ReadFile(r.File)
	if err != nil {
		t.Fatal(err)
	}

	t.Run("deterministic", func(t *testing.T) {
		// Platforms given the other way round: same bytes.
		again, err := os.ReadFile(build(t, "linux/arm64", "linux/amd64").File)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(archive, again) {
			t.Error("two builds of the same inputs differ")
		}
	})

	// Untar it the way `tar x` would, checking the headers on the way.
	dir := t.TempDir()
	var names []string
	tr := tar.NewReader(bytes.NewReader(archive))
	for {
		hdr, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatalf("reading the archive: %v", err)
		}
		names = append(names, hdr.Name)
		if !hdr.ModTime.Equal(created) || hdr.Uid != 0 || hdr.Gid != 0 || hdr.Uname != "" || hdr.Gname != "" {
			t.Errorf("%s: mtime %v owner %d:%d (%q:%q), want %v and 0:0 without names", hdr.Name, hdr.ModTime, hdr.Uid, hdr.Gid, hdr.Uname, hdr.Gname, created)
		}
		p := filepath.Join(dir, filepath.FromSlash(hdr.Name))
		switch hdr.Typeflag {
		case tar.TypeDir:
			if hdr.Mode != 0o755 {
				t.Errorf("%s: mode %o, want 755", hdr.Name, hdr.Mode)
			}
			if err := os.MkdirAll(p, 0o755); err != nil {
				t.Fatal(err)
			}
		case tar.TypeReg:
			if hdr.Mode != 0o644 {
				t.Errorf("%s: mode %o, want 644", hdr.Name, hdr.Mode)
			}
			data, err := io.ReadAll(tr)
			if err != nil {
				t.Fatal(err)
			}
			if h, ok := strings.CutPrefix(hdr.Name, "blobs/sha256/"); ok {
				if sum := sha256.Sum256(data); hex.EncodeToString(sum[:]) != h {
					t.Errorf("%s: content has digest %x", hdr.Name, sum)
				}
			}
			if err := os.WriteFile(p, data, 0o644); err != nil {
				t.Fatal(err)
			}
		default:
			t.Errorf("%s: unexpected type %c", hdr.Name, hdr.Typeflag)
		}
	}
	if len(names) < 4 || !slices.Equal(names[:4], []string{"oci-layout", "index.json", "blobs/", "blobs/sha256/"}) || !slices.IsSorted(names[4:]) {
		t.Errorf("archive entries %q: want oci-layout, index.json, blobs/, blobs/sha256/, then the blobs sorted", names)
	}

	lp, err := layout.FromPath(dir)
	if err != nil {
		t.Fatalf("not an OCI image layout: %v", err)
	}
	top, err := lp.ImageIndex()
	if err != nil {
		t.Fatal(err)
	}
	topManifest, err := top.IndexManifest()
	if err != nil {
		t.Fatal(err)
	}
	if len(topManifest.Manifests) != 1 {
		t.Fatalf("index.json lists %d manifests, want one image index", len(topManifest.Manifests))
	}
	entry := topManifest.Manifests[0]

	t.Run("index.json names the image", func(t *testing.T) {
		if entry.MediaType != types.OCIImageIndex {
			t.Errorf("index.json entry media type %s, want %s", entry.MediaType, types.OCIImageIndex)
		}
		for k, want := range map[string]string{
			"org.opencontainers.image.ref.name": "v1",
			"io.containerd.image.name":          wantRef,
		} {
			if got := entry.Annotations[k]; got != want {
				t.Errorf("annotation %s = %q, want %q", k, got, want)
			}
		}
	})

	idx, err := top.ImageIndex(entry.Digest)
	if err != nil {
		t.Fatal(err)
	}
	if err := validate.Index(idx); err != nil {
		t.Errorf("validate.Index: %v", err)
	}
	im, err := idx.IndexManifest()
	if err != nil {
		t.Fatal(err)
	}
	if mt, _ := idx.MediaType(); mt != types.OCIImageIndex || im.MediaType != types.OCIImageIndex {
		t.Errorf("image index media type %s / %s, want %s", mt, im.MediaType, types.OCIImageIndex)
	}
	if got := im.Annotations["org.opencontainers.image.version"]; got != "v1" {
		t.Errorf("image index annotation org.opencontainers.image.version = %q, want v1", got)
	}
	if got := im.Annotations["org.opencontainers.image.created"]; got != "2023-11-14T22:13:20Z" {
		t.Errorf("image index annotation org.opencontainers.image.created = %q, want 2023-11-14T22:13:20Z", got)
	}
	var platforms []string
	for _, d := range im.Manifests {
		if d.Platform == nil {
			t.Fatalf("manifest %s has no platform", d.Digest)
		}
		platforms = append(platforms, d.Platform.OS+"/"+d.Platform.Architecture)
	}
	if !slices.Equal(platforms, []string{"linux/amd64", "linux/arm64"}) {
		t.Fatalf("image index platforms = %v, want exactly linux/amd64, linux/arm64", platforms)
	}

	machines := map[string]elf.Machine{"amd64": elf.EM_X86_64, "arm64": elf.EM_AARCH64}
	var baseLayers []v1.Hash
	for _, d := range im.Manifests {
		arch := d.Platform.Architecture
		t.Run(arch, func(t *testing.T) {
			if d.MediaType != types.OCIManifestSchema1 {
				t.Errorf("manifest media type %s, want %s", d.MediaType, types.OCIManifestSchema1)
			}
			img, err := idx.Image(d.Digest)
			if err != nil {
				t.Fatal(err)
			}
			m, err := img.Manifest()
			if err != nil {
				t.Fatal(err)
			}
			if m.Config.MediaType != types.OCIConfigJSON {
				t.Errorf("config media type %s, want %s", m.Config.MediaType, types.OCIConfigJSON)
			}
			if len(m.Layers) != 2 {
				t.Fatalf("%d layers, want base + pause", len(m.Layers))
			}
			for _, l := range m.Layers {
				if l.MediaType != types.OCILayer {
					t.Errorf("layer %s: media type %s, want %s", l.Digest, l.MediaType, types.OCILayer)
				}
			}
			baseLayers = append(baseLayers, m.Layers[0].Digest)
			cf, err := img.ConfigFile()
			if err != nil {
				t.Fatal(err)
			}
			if cf.OS != "linux" || cf.Architecture != arch {
				t.Errorf("config platform %s/%s, want linux/%s", cf.OS, cf.Architecture, arch)
			}
			if !slices.Equal(cf.Config.Entrypoint, []string{"/pause"}) || cf.Config.User != "65532:65532" {
				t.Errorf("entrypoint %q user %q, want [/pause] 65532:65532", cf.Config.Entrypoint, cf.Config.User)
			}
			bin := extractFile(t, img, "pause")
			f, err := elf.NewFile(bytes.NewReader(bin))
			if err != nil {
				t.Fatalf("/pause is not an ELF file: %v", err)
			}
			if f.Machine != machines[arch] {
				t.Errorf("/pause is for %v, want %v", f.Machine, machines[arch])
			}
		})
	}
	if len(baseLayers) != 2 || baseLayers[0] != baseLayers[1] {
		t.Errorf("base layers %v, want one layer shared by both platforms", baseLayers)
	}
}

// extractFile returns the contents of file (no leading slash) in img's file system.
func extractFile(t *testing.T, img v1.Image, file string) []byte {
	t.Helper()
	rc := mutate.Extract(img)
	defer func() { _ = rc.Close() }()
	tr := tar.NewReader(rc)
	for {
		hdr, err := tr.Next()
		if errors.Is(err, io.EOF) {
			t.Fatalf("/%s not in the image", file)
		}
		if err != nil {
			t.Fatal(err)
		}
		if strings.TrimPrefix(hdr.Name, "./") == file && hdr.Typeflag == tar.TypeReg {
			data, err := io.ReadAll(tr)
			if err != nil {
				t.Fatal(err)
			}
			return data
		}
	}
}
