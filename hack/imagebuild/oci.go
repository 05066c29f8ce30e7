package main

import (
	"archive/tar"
	"bytes"
	"crypto/sha256"
	"debug/elf"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// Output formats (-format).
const (
	formatDocker = "docker" // one docker-archive tarball (manifest.json, RepoTags) per image, one platform
	formatOCI    = "oci"    // one OCI image layout tarball per image: an index of every platform
)

// Annotations of the index.json entries that name the image: the tag
// (org.opencontainers.image.ref.name, as `docker save` and BuildKit write it;
// `skopeo copy oci-archive:FILE:TAG`) and the full reference, which
// `ctr images import` and `docker load` use as the image name.
const (
	annotationRefName       = "org.opencontainers.image.ref.name"
	annotationContainerName = "io.containerd.image.name"
	annotationCreated       = "org.opencontainers.image.created"
	ociLayoutFile           = `{"imageLayoutVersion":"1.0.0"}`
)

// platform is one target of the images: GOOS/GOARCH of the binaries built
// here and the ELF machine they have.
type platform struct {
	OS, Arch string
	Machine  elf.Machine
}

func (p platform) String() string { return p.OS + "/" + p.Arch }

// supportedPlatforms, in the order images list them. The base layer has no
// binaries, so it serves every platform; adding one is a line here.
var supportedPlatforms = []platform{
	{OS: "linux", Arch: "amd64", Machine: elf.EM_X86_64},
	{OS: "linux", Arch: "arm64", Machine: elf.EM_AARCH64},
}

var defaultPlatform = supportedPlatforms[0]

func supportedPlatformNames() string {
	names := make([]string, 0, len(supportedPlatforms))
	for _, p := range supportedPlatforms {
		names = append(names, p.String())
	}
	return strings.Join(names, ",")
}

// parsePlatforms parses the -platforms list (os/arch, e.g. linux/arm64).
// Every entry must be supported and given once; the result is in
// supportedPlatforms order, so the order of the list does not change the
// output. An empty list is linux/amd64.
func parsePlatforms(list []string) ([]platform, error) {
	if len(list) == 0 {
		return []platform{defaultPlatform}, nil
	}
	seen := map[string]bool{}
	for _, s := range list {
		s = strings.TrimSpace(s)
		if s == "" {
			return nil, fmt.Errorf("-platforms %q: empty entry (want a comma-separated list of %s)", strings.Join(list, ","), supportedPlatformNames())
		}
		if !slices.ContainsFunc(supportedPlatforms, func(p platform) bool { return p.String() == s }) {
			return nil, fmt.Errorf("-platforms: unknown platform %q (supported: %s)", s, supportedPlatformNames())
		}
		if seen[s] {
			return nil, fmt.Errorf("-platforms: %s listed twice", s)
		}
		seen[s] = true
	}
	var out []platform
	for _, p := range supportedPlatforms {
		if seen[p.String()] {
			out = append(out, p)
		}
	}
	return out, nil
}

// platformImage is the image of one platform.
type platformImage struct {
	platform platform
	image    v1.Image
}

// blob is one file under blobs/sha256 of an OCI layout.
type blob struct {
	size int64
	open func() (io.ReadCloser, error)
}

func bytesBlob(b []byte) blob {
	return blob{size: int64(len(b)), open: func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(b)), nil }}
}

// writeOCIArchive writes an OCI image layout as one tar ("oci-archive"):
// oci-layout, index.json and blobs/sha256/<hex>. index.json has one entry
// per reference, each pointing to the same image index, which lists the
// image of every platform with its platform and carries annotations
// (labels, created). Blobs shared by several images (the base layer) are
// written once; entries are sorted and their tar headers fixed (mtime
// created, root, 0644/0755), so equal inputs give equal bytes.
func writeOCIArchive(w io.Writer, refs []name.Tag, annotations map[string]string, created time.Time, images []platformImage) error {
	if len(refs) == 0 {
		return errors.New("no image reference")
	}
	if len(images) == 0 {
		return errors.New("no image")
	}
	blobs := map[string]blob{}
	addBlob := func(d v1.Hash, b blob) error {
		if d.Algorithm != "sha256" {
			return fmt.Errorf("blob %s: only sha256 digests are written", d)
		}
		if old, ok := blobs[d.Hex]; ok && old.size != b.size {
			return fmt.Errorf("blob %s: sizes %d and %d", d, old.size, b.size)
		}
		blobs[d.Hex] = b
		return nil
	}
	index := v1.IndexManifest{SchemaVersion: 2, MediaType: types.OCIImageIndex, Annotations: annotations}
	for _, pi := range images {
		desc, err := addImageBlobs(pi.image, addBlob)
		if err != nil {
			return fmt.Errorf("%s: %w", pi.platform, err)
		}
		desc.Platform = &v1.Platform{OS: pi.platform.OS, Architecture: pi.platform.Arch}
		index.Manifests = append(index.Manifests, desc)
	}
	rawIndex, err := json.Marshal(index)
	if err != nil {
		return err
	}
	indexDigest, indexSize, err := v1.SHA256(bytes.NewReader(rawIndex))
	if err != nil {
		return err
	}
	if err := addBlob(indexDigest, bytesBlob(rawIndex)); err != nil {
		return err
	}

	top := v1.IndexManifest{SchemaVersion: 2, MediaType: types.OCIImageIndex}
	for _, r := range refs {
		top.Manifests = append(top.Manifests, v1.Descriptor{
			MediaType: types.OCIImageIndex,
			Size:      indexSize,
			Digest:    indexDigest,
			Annotations: map[string]string{
				annotationRefName:       r.TagStr(),
				annotationContainerName: r.String(),
			},
		})
	}
	rawTop, err := json.Marshal(top)
	if err != nil {
		return err
	}

	tw := tar.NewWriter(w)
	header := func(name string, typ byte, size int64) *tar.Header {
		h := &tar.Header{Name: name, Typeflag: typ, Size: size, Mode: 0o644, ModTime: created, Format: tar.FormatUSTAR}
		if typ == tar.TypeDir {
			h.Mode = 0o755
		}
		return h
	}
	writeFile := func(name string, b blob, wantHex string) error {
		if err := tw.WriteHeader(header(name, tar.TypeReg, b.size)); err != nil {
			return fmt.Errorf("%s: %w", name, err)
		}
		rc, err := b.open()
		if err != nil {
			return fmt.Errorf("%s: %w", name, err)
		}
		defer func() { _ = rc.Close() }()
		h := sha256.New()
		n, err := io.Copy(tw, io.TeeReader(rc, h))
		if err != nil {
			return fmt.Errorf("write %s: %w", name, err)
		}
		if n != b.size {
			return fmt.Errorf("write %s: %d bytes, want %d", name, n, b.size)
		}
		if got := hex.EncodeToString(h.Sum(nil)); wantHex != "" && got != wantHex {
			return fmt.Errorf("write %s: content has digest sha256:%s", name, got)
		}
		return nil
	}
	if err := writeFile("oci-layout", bytesBlob([]byte(ociLayoutFile)), ""); err != nil {
		return err
	}
	if err := writeFile("index.json", bytesBlob(rawTop), ""); err != nil {
		return err
	}
	for _, d := range []string{"blobs/", "blobs/sha256/"} {
		if err := tw.WriteHeader(header(d, tar.TypeDir, 0)); err != nil {
			return err
		}
	}
	hexes := make([]string, 0, len(blobs))
	for h := range blobs {
		hexes = append(hexes, h)
	}
	slices.Sort(hexes)
	for _, h := range hexes {
		if err := writeFile("blobs/sha256/"+h, blobs[h], h); err != nil {
			return err
		}
	}
	return tw.Close()
}

// addImageBlobs adds the manifest, config and layers of img and returns the
// manifest's descriptor.
func addImageBlobs(img v1.Image, add func(v1.Hash, blob) error) (v1.Descriptor, error) {
	mt, err := img.MediaType()
	if err != nil {
		return v1.Descriptor{}, err
	}
	if mt != types.OCIManifestSchema1 {
		return v1.Descriptor{}, fmt.Errorf("manifest media type %s, want %s", mt, types.OCIManifestSchema1)
	}
	rawManifest, err := img.RawManifest()
	if err != nil {
		return v1.Descriptor{}, err
	}
	digest, size, err := v1.SHA256(bytes.NewReader(rawManifest))
	if err != nil {
		return v1.Descriptor{}, err
	}
	if err := add(digest, bytesBlob(rawManifest)); err != nil {
		return v1.Descriptor{}, err
	}
	cfgName, err := img.ConfigName()
	if err != nil {
		return v1.Descriptor{}, err
	}
	rawCfg, err := img.RawConfigFile()
	if err != nil {
		return v1.Descriptor{}, err
	}
	if err := add(cfgName, bytesBlob(rawCfg)); err != nil {
		return v1.Descriptor{}, err
	}
	layers, err := img.Layers()
	if err != nil {
		return v1.Descriptor{}, err
	}
	for _, l := range layers {
		d, err := l.Digest()
		if err != nil {
			return v1.Descriptor{}, err
		}
		n, err := l.Size()
		if err != nil {
			return v1.Descriptor{}, err
		}
		if err := add(d, blob{size: n, open: l.Compressed}); err != nil {
			return v1.Descriptor{}, err
		}
	}
	return v1.Descriptor{MediaType: mt, Size: size, Digest: digest}, nil
}
