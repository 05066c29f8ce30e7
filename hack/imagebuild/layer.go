package main

import (
	"archive/tar"
	"bufio"
	"compress/gzip"
	"fmt"
	"io"
	"os"
	"path"
	"sort"
	"strings"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
)

const (
	nonrootUID = 65532
	nonrootGID = 65532
)

// entry is one file system entry of a layer. Exactly one of hostPath and data
// is used for regular files; dir marks a directory, a non-empty link a
// symbolic link to it.
type entry struct {
	name     string // absolute path in the image, e.g. /etc/passwd
	dir      bool
	mode     int64 // permission bits plus setuid/setgid/sticky
	uid, gid int
	data     []byte // contents of a regular file
	hostPath string // or: copy the contents of this host file
	link     string // target of a symbolic link
}

// layerBuilder collects entries and writes them as a gzip-compressed tar with
// deterministic order, ownership and timestamps, adding the parent directories
// (root:root 0755) that were not given explicitly.
type layerBuilder struct {
	entries map[string]entry
}

func newLayer() *layerBuilder { return &layerBuilder{entries: map[string]entry{}} }

func (l *layerBuilder) add(e entry) {
	e.name = path.Clean("/" + e.name)
	l.entries[e.name] = e
	for d := path.Dir(e.name); d != "/"; d = path.Dir(d) {
		if _, ok := l.entries[d]; !ok {
			l.entries[d] = entry{name: d, dir: true, mode: 0o755}
		}
	}
}

func (l *layerBuilder) dir(name string, mode int64, uid, gid int) {
	l.add(entry{name: name, dir: true, mode: mode, uid: uid, gid: gid})
}

func (l *layerBuilder) file(name string, mode int64, data []byte) {
	l.add(entry{name: name, mode: mode, data: data})
}

func (l *layerBuilder) symlink(name, target string) {
	l.add(entry{name: name, mode: 0o777, link: target})
}

func (l *layerBuilder) hostFile(name string, mode int64, hostPath string) {
	l.add(entry{name: name, mode: mode, hostPath: hostPath})
}

// write writes the layer to file (tar+gzip) and returns it as a v1.Layer
// backed by that file. Every entry gets mtime.
func (l *layerBuilder) write(file string, mtime time.Time) (v1.Layer, error) {
	f, err := os.Create(file)
	if err != nil {
		return nil, err
	}
	if err := l.writeTo(f, mtime); err != nil {
		_ = f.Close()
		return nil, fmt.Errorf("writing layer %s: %w", file, err)
	}
	if err := f.Close(); err != nil {
		return nil, err
	}
	// The file is already gzip-compressed: go-containerregistry detects that and
	// serves it as is, so the (large) binaries are compressed exactly once.
	return tarball.LayerFromFile(file)
}

func (l *layerBuilder) writeTo(w io.Writer, mtime time.Time) error {
	bw := bufio.NewWriterSize(w, 1<<20)
	zw, err := gzip.NewWriterLevel(bw, gzip.DefaultCompression)
	if err != nil {
		return err
	}
	tw := tar.NewWriter(zw)
	names := make([]string, 0, len(l.entries))
	for n := range l.entries {
		names = append(names, n)
	}
	sort.Strings(names) // parents sort before their children
	for _, n := range names {
		if err := writeEntry(tw, l.entries[n], mtime); err != nil {
			return err
		}
	}
	if err := tw.Close(); err != nil {
		return err
	}
	if err := zw.Close(); err != nil {
		return err
	}
	return bw.Flush()
}

func writeEntry(tw *tar.Writer, e entry, mtime time.Time) error {
	hdr := &tar.Header{
		Name:    strings.TrimPrefix(e.name, "/"),
		Mode:    e.mode,
		Uid:     e.uid,
		Gid:     e.gid,
		ModTime: mtime,
		Format:  tar.FormatPAX,
	}
	if e.dir {
		hdr.Typeflag = tar.TypeDir
		hdr.Name += "/"
		return tw.WriteHeader(hdr)
	}
	if e.link != "" {
		hdr.Typeflag = tar.TypeSymlink
		hdr.Linkname = e.link
		return tw.WriteHeader(hdr)
	}
	hdr.Typeflag = tar.TypeReg
	if e.hostPath == "" {
		hdr.Size = int64(len(e.data))
		if err := tw.WriteHeader(hdr); err != nil {
			return err
		}
		_, err := tw.Write(e.data)
		return err
	}
	src, err := os.Open(e.hostPath)
	if err != nil {
		return err
	}
	defer func() { _ = src.Close() }()
	st, err := src.Stat()
	if err != nil {
		return err
	}
	if !st.Mode().IsRegular() {
		return fmt.Errorf("%s: not a regular file", e.hostPath)
	}
	hdr.Size = st.Size()
	if err := tw.WriteHeader(hdr); err != nil {
		return err
	}
	n, err := io.Copy(tw, src)
	if err != nil {
		return fmt.Errorf("copying %s: %w", e.hostPath, err)
	}
	if n != hdr.Size {
		return fmt.Errorf("copying %s: file changed size while reading (%d != %d)", e.hostPath, n, hdr.Size)
	}
	return nil
}

// baseLayer is the distroless-style static base shared by every image: the
// users root, nobody and nonroot (65532), /tmp (1777), nonroot's home, the CA
// bundle of the build host and an nsswitch.conf so that Go's resolver reads
// /etc/hosts first.
func baseLayer(caBundle string) *layerBuilder {
	l := newLayer()
	l.file("/etc/passwd", 0o644, []byte(
		"root:x:0:0:root:/root:/sbin/nologin\n"+
			"nobody:x:65534:65534:nobody:/nonexistent:/sbin/nologin\n"+
			"nonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin\n"))
	l.file("/etc/group", 0o644, []byte(
		"root:x:0:\n"+
			"tty:x:5:\n"+
			"staff:x:50:\n"+
			"nobody:x:65534:\n"+
			"nonroot:x:65532:\n"))
	l.file("/etc/nsswitch.conf", 0o644, []byte("hosts: files dns\n"))
	l.hostFile("/etc/ssl/certs/ca-certificates.crt", 0o644, caBundle)
	l.dir("/tmp", 0o1777, 0, 0)
	l.dir("/root", 0o700, 0, 0)
	l.dir("/home/nonroot", 0o700, nonrootUID, nonrootGID)
	return l
}
