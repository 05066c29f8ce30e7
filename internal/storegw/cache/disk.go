package cache

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"

	"github.com/go-logr/logr"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/thanos-io/objstore"
)

// DiskChunkPageSize is the unit in which DiskChunks fetches and keeps chunk
// segment files: large enough that a heavy query makes few requests, small
// enough that a cold small query does not read much more than it needs.
const DiskChunkPageSize = 256 << 10

// DiskChunks caches the chunk segment files of blocks on local disk, page by
// page, in sparse files under dir, bounded by maxSize bytes. Heavy queries
// read gigabytes of chunks; from local disk (mostly the page cache) that
// costs a fraction of the CPU of fetching it again from object storage, and
// none of the process's memory.
//
// Every other operation goes to the wrapped bucket. Files are evicted whole,
// least recently used first.
type DiskChunks struct {
	objstore.Bucket
	dir     string
	maxSize int64
	logger  logr.Logger

	mu    sync.Mutex
	files map[string]*diskFile // by object name
	size  int64                // bytes of the pages held
	clock uint64
	seq   uint64

	requests, hits prometheus.Counter
	fetched        prometheus.Counter
	evictions      prometheus.Counter
	sizeGauge      prometheus.GaugeFunc
}

// diskFile is the local copy of one segment file. Its path is unique to it:
// a file evicted and cached again gets a new path, so that a reader never
// mistakes the holes of a new file for data.
type diskFile struct {
	path string

	mu      sync.Mutex
	present []uint64 // bitmap of the pages written
	pages   int64
	end     int64 // size of the object once known, else -1
	lastUse uint64
}

// NewDiskChunks returns a disk chunk cache of at most maxSize bytes in dir
// over bkt. The directory is emptied: page maps are not kept across restarts.
func NewDiskChunks(bkt objstore.Bucket, dir string, maxSize int64, logger logr.Logger, reg prometheus.Registerer) (*DiskChunks, error) {
	if maxSize < 4*DiskChunkPageSize {
		return nil, fmt.Errorf("disk chunk cache size %d is below the minimum of %d bytes", maxSize, 4*DiskChunkPageSize)
	}
	if err := os.RemoveAll(dir); err != nil {
		return nil, fmt.Errorf("clear disk chunk cache: %w", err)
	}
	if err := os.MkdirAll(dir, 0o750); err != nil {
		return nil, fmt.Errorf("create disk chunk cache dir: %w", err)
	}
	d := &DiskChunks{
		Bucket: bkt, dir: dir, maxSize: maxSize, logger: logger, files: map[string]*diskFile{},
		requests: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "stevedore_store_chunk_disk_cache_requests_total", Help: "Chunk range reads asked of the disk chunk cache.",
		}),
		hits: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "stevedore_store_chunk_disk_cache_hits_total", Help: "Chunk range reads served from local disk without fetching.",
		}),
		fetched: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "stevedore_store_chunk_disk_cache_fetched_bytes_total", Help: "Bytes of chunk pages fetched from the bucket into the disk chunk cache.",
		}),
		evictions: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "stevedore_store_chunk_disk_cache_evictions_total", Help: "Segment files evicted from the disk chunk cache.",
		}),
	}
	d.sizeGauge = prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "stevedore_store_chunk_disk_cache_size_bytes", Help: "Bytes of chunk pages held in the disk chunk cache.",
	}, func() float64 { d.mu.Lock(); defer d.mu.Unlock(); return float64(d.size) })
	if reg != nil {
		reg.MustRegister(d.requests, d.hits, d.fetched, d.evictions, d.sizeGauge)
	}
	return d, nil
}

func (d *DiskChunks) file(name string) *diskFile {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.clock++
	f, ok := d.files[name]
	if !ok {
		d.seq++
		base := strings.ReplaceAll(name, "/", "_") + "." + strconv.FormatUint(d.seq, 10)
		f = &diskFile{path: filepath.Join(d.dir, base), end: -1}
		d.files[name] = f
	}
	f.lastUse = d.clock
	return f
}

// GetRange implements objstore.BucketReader.
func (d *DiskChunks) GetRange(ctx context.Context, name string, off, length int64) (io.ReadCloser, error) {
	if !isChunkFile(name) || off < 0 || length <= 0 {
		return d.Bucket.GetRange(ctx, name, off, length)
	}
	d.requests.Inc()
	f := d.file(name)
	first, last := off/DiskChunkPageSize, (off+length-1)/DiskChunkPageSize
	missFrom, missTo, end := f.missing(first, last)
	if end >= 0 {
		if off >= end {
			return io.NopCloser(strings.NewReader("")), nil
		}
		length = min(length, end-off)
	}
	if missFrom < 0 {
		fd, err := os.Open(f.path)
		if err == nil {
			d.hits.Inc()
			return &sectionReadCloser{io.NewSectionReader(fd, off, length), fd}, nil
		}
		// Evicted meanwhile: fetch the range as if never cached.
		return d.Bucket.GetRange(ctx, name, off, length)
	}
	fd, err := os.OpenFile(f.path, os.O_RDWR|os.O_CREATE, 0o640)
	if err != nil {
		d.logger.Error(err, "open disk chunk cache file; reading from the bucket", "object", name)
		return d.Bucket.GetRange(ctx, name, off, length)
	}
	if missFrom == first && missTo == last {
		// Nothing of the range is cached: serve it as it arrives and write
		// the pages on the way, so a cold read waits for no disk write.
		start := first * DiskChunkPageSize
		want := (last - first + 1) * DiskChunkPageSize
		rc, err := d.Bucket.GetRange(ctx, name, start, want)
		if err != nil {
			_ = fd.Close()
			return nil, err
		}
		return &teeRange{d: d, name: name, f: f, fd: fd, rc: rc, start: start, want: want, pos: start, off: off, end: off + length}, nil
	}
	if err := d.fill(ctx, name, f, fd, missFrom, missTo); err != nil {
		_ = fd.Close()
		return nil, err
	}
	if f.end >= 0 {
		if off >= f.end {
			_ = fd.Close()
			return io.NopCloser(strings.NewReader("")), nil
		}
		length = min(length, f.end-off)
	}
	// fd stays valid even if the file is evicted (unlinked) from now on.
	return &sectionReadCloser{io.NewSectionReader(fd, off, length), fd}, nil
}

// missing returns the first and last missing page in [first, last] (-1 when
// none is) and the object's end if known.
func (f *diskFile) missing(first, last int64) (from, to, end int64) {
	f.mu.Lock()
	defer f.mu.Unlock()
	from, to = -1, -1
	if f.end >= 0 {
		last = min(last, max((f.end-1)/DiskChunkPageSize, 0))
	}
	for p := first; p <= last; p++ {
		if !f.has(p) {
			if from < 0 {
				from = p
			}
			to = p
		}
	}
	return from, to, f.end
}

func (f *diskFile) has(p int64) bool {
	w := p / 64
	return w < int64(len(f.present)) && f.present[w]&(1<<(p%64)) != 0
}

// fill fetches pages [from, to] with one ranged read and writes them into fd.
func (d *DiskChunks) fill(ctx context.Context, name string, f *diskFile, fd *os.File, from, to int64) error {
	start, want := from*DiskChunkPageSize, (to-from+1)*DiskChunkPageSize
	rc, err := d.Bucket.GetRange(ctx, name, start, want)
	if err != nil {
		return err
	}
	defer func() { _ = rc.Close() }()
	buf := make([]byte, 256<<10)
	n, err := io.CopyBuffer(io.NewOffsetWriter(fd, start), struct{ io.Reader }{rc}, buf)
	if err != nil {
		return fmt.Errorf("fetch %s pages %d-%d into the disk chunk cache: %w", name, from, to, err)
	}
	d.filled(name, f, start, want, n)
	return nil
}

// filled marks the pages of the n bytes written at start, of the want bytes
// asked for, as present: pages wholly written, and when the object ended
// before want, its last, partial page.
func (d *DiskChunks) filled(name string, f *diskFile, start, want, n int64) {
	d.fetched.Add(float64(n))
	from := start / DiskChunkPageSize
	full := n / DiskChunkPageSize
	eof := n < want
	f.mu.Lock()
	added := int64(0)
	mark := func(p int64) {
		w := int(p / 64)
		if w >= len(f.present) {
			f.present = append(f.present, make([]uint64, w+1-len(f.present))...)
		}
		if f.present[w]&(1<<(p%64)) == 0 {
			f.present[w] |= 1 << (p % 64)
			added++
		}
	}
	for p := from; p < from+full; p++ {
		mark(p)
	}
	if eof {
		if n%DiskChunkPageSize != 0 {
			mark(from + full)
		}
		f.end = start + n
	}
	f.pages += added
	f.mu.Unlock()
	d.account(name, f, added*DiskChunkPageSize)
}

// teeRange reads pages [start, start+want) of an object from the bucket,
// returns the caller's range [off, end) of them and writes all of them into
// the cache file. The pages are marked present on Close, once every byte was
// written; a failed read or write leaves them missing.
type teeRange struct {
	d           *DiskChunks
	name        string
	f           *diskFile
	fd          *os.File
	rc          io.ReadCloser
	start, want int64
	pos         int64 // absolute offset of the next byte of rc
	off, end    int64
	eof         bool  // the object ended before start+want
	failed      bool  // a read failed: do not mark
	writeErr    error // a write failed: do not mark
	buf         []byte
}

func (t *teeRange) Read(p []byte) (int, error) {
	if t.pos < t.off {
		if err := t.cacheOnly(t.off - t.pos); err != nil {
			return 0, err
		}
	}
	if t.eof || t.pos >= t.end {
		return 0, io.EOF
	}
	p = p[:min(int64(len(p)), t.end-t.pos)]
	n, err := t.rc.Read(p)
	t.write(p[:n])
	if errors.Is(err, io.EOF) {
		t.eof = true
		if n > 0 {
			err = nil
		}
	} else if err != nil {
		t.failed = true
	}
	return n, err
}

func (t *teeRange) write(b []byte) {
	if len(b) > 0 && t.writeErr == nil {
		_, t.writeErr = t.fd.WriteAt(b, t.pos)
	}
	t.pos += int64(len(b))
}

// cacheOnly moves n bytes from the bucket to the file only.
func (t *teeRange) cacheOnly(n int64) error {
	if t.buf == nil {
		t.buf = make([]byte, 64<<10)
	}
	for n > 0 && !t.eof {
		k, err := t.rc.Read(t.buf[:min(n, int64(len(t.buf)))])
		t.write(t.buf[:k])
		n -= int64(k)
		if errors.Is(err, io.EOF) {
			t.eof = true
		} else if err != nil {
			t.failed = true
			return err
		}
	}
	return nil
}

// Close reads and caches the rest of the pages, marks them, and closes.
func (t *teeRange) Close() error {
	if !t.failed && !t.eof {
		_ = t.cacheOnly(t.start + t.want - t.pos)
	}
	if !t.failed && t.writeErr == nil {
		t.d.filled(t.name, t.f, t.start, t.want, t.pos-t.start)
	} else if t.writeErr != nil {
		t.d.logger.Error(t.writeErr, "write disk chunk cache file; pages not cached", "object", t.name)
	}
	err := t.rc.Close()
	_ = t.fd.Close()
	return err
}

// account adds n bytes held by f and evicts least recently used files while
// the cache is over its size.
func (d *DiskChunks) account(name string, f *diskFile, n int64) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.files[name] != f {
		return // Evicted while being filled: its pages were never counted.
	}
	d.size += n
	for d.size > d.maxSize && len(d.files) > 0 {
		victim := ""
		for k, v := range d.files {
			if victim == "" || v.lastUse < d.files[victim].lastUse {
				victim = k
			}
		}
		v := d.files[victim]
		delete(d.files, victim)
		v.mu.Lock()
		d.size -= v.pages * DiskChunkPageSize
		v.mu.Unlock()
		d.evictions.Inc()
		if err := os.Remove(v.path); err != nil && !errors.Is(err, fs.ErrNotExist) {
			d.logger.Error(err, "remove evicted disk chunk cache file", "path", v.path)
		}
	}
}

// Files lists the objects with pages in the cache, sorted (tests, status).
func (d *DiskChunks) Files() []string {
	d.mu.Lock()
	defer d.mu.Unlock()
	var out []string
	for k, f := range d.files {
		f.mu.Lock()
		if f.pages > 0 {
			out = append(out, k)
		}
		f.mu.Unlock()
	}
	slices.Sort(out)
	return out
}

// Size is the number of bytes of pages held.
func (d *DiskChunks) Size() int64 {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.size
}

type sectionReadCloser struct {
	*io.SectionReader
	f *os.File
}

func (s *sectionReadCloser) Close() error { return s.f.Close() }
