package cache

import (
	"bytes"
	"context"
	"io"
	"math/rand"
	"path/filepath"
	"sync/atomic"
	"testing"

	"github.com/go-logr/logr"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/thanos-io/objstore"
	"github.com/thanos-io/objstore/providers/filesystem"
)

// countingBucket counts the ranged reads that reach a real bucket.
type countingBucket struct {
	objstore.Bucket
	getRanges atomic.Int64
}

func (c *countingBucket) GetRange(ctx context.Context, name string, off, length int64) (io.ReadCloser, error) {
	c.getRanges.Add(1)
	return c.Bucket.GetRange(ctx, name, off, length)
}

func readRange(t *testing.T, b objstore.BucketReader, name string, off, length int64) []byte {
	t.Helper()
	rc, err := b.GetRange(context.Background(), name, off, length)
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	got, err := io.ReadAll(rc)
	if err != nil {
		t.Fatal(err)
	}
	return got
}

func TestDiskChunks(t *testing.T) {
	ctx := context.Background()
	fs, err := filesystem.NewBucket(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	rnd := rand.New(rand.NewSource(1))
	objects := map[string][]byte{}
	for _, name := range []string{"01JAAAAAAAAAAAAAAAAAAAAAAA/chunks/000001", "01JAAAAAAAAAAAAAAAAAAAAAAA/chunks/000002", "01JBBBBBBBBBBBBBBBBBBBBBBB/chunks/000001"} {
		data := make([]byte, 3*DiskChunkPageSize+12345) // Four pages, the last partial.
		rnd.Read(data)
		objects[name] = data
		if err := fs.Upload(ctx, name, bytes.NewReader(data)); err != nil {
			t.Fatal(err)
		}
	}
	if err := fs.Upload(ctx, "01JAAAAAAAAAAAAAAAAAAAAAAA/index", bytes.NewReader([]byte("index"))); err != nil {
		t.Fatal(err)
	}
	cb := &countingBucket{Bucket: fs}
	reg := prometheus.NewRegistry()
	// Room for two objects of four pages: the third evicts the least recently used.
	d, err := NewDiskChunks(cb, filepath.Join(t.TempDir(), "chunks"), 8*DiskChunkPageSize, logr.Discard(), reg)
	if err != nil {
		t.Fatal(err)
	}
	a := "01JAAAAAAAAAAAAAAAAAAAAAAA/chunks/000001"
	ranges := []struct{ off, length int64 }{
		{0, 10}, {DiskChunkPageSize - 5, 10}, {100, 2 * DiskChunkPageSize}, {3 * DiskChunkPageSize, 12345}, {3*DiskChunkPageSize + 12000, 1000}, {0, 10 * DiskChunkPageSize}, {5 * DiskChunkPageSize, 10},
	}
	check := func(name string, off, length int64) {
		t.Helper()
		data := objects[name]
		want := data[min(off, int64(len(data))):min(off+length, int64(len(data)))]
		if got := readRange(t, d, name, off, length); !bytes.Equal(got, want) {
			t.Fatalf("%s %d+%d: %d bytes differ from the %d expected", name, off, length, len(got), len(want))
		}
	}
	for _, r := range ranges {
		check(a, r.off, r.length)
	}
	cold := cb.getRanges.Load()
	if cold == 0 || cold > int64(len(ranges)) {
		t.Fatalf("%d bucket reads for %d cold ranges", cold, len(ranges))
	}
	for _, r := range ranges {
		check(a, r.off, r.length)
	}
	if n := cb.getRanges.Load(); n != cold {
		t.Fatalf("warm reads went to the bucket: %d reads, %d when cold", n, cold)
	}
	if h := testCounter(t, reg, "stevedore_store_chunk_disk_cache_hits_total"); h < float64(len(ranges)) {
		t.Errorf("%v hits after a warm pass of %d ranges", h, len(ranges))
	}
	if s := d.Size(); s != 4*DiskChunkPageSize {
		t.Errorf("size %d, want four pages", s)
	}

	// A reader open on a file keeps reading it after the file is evicted.
	rc, err := d.GetRange(ctx, a, 10, 3*DiskChunkPageSize)
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"01JAAAAAAAAAAAAAAAAAAAAAAA/chunks/000002", "01JBBBBBBBBBBBBBBBBBBBBBBB/chunks/000001"} {
		check(name, 0, 4*DiskChunkPageSize)
	}
	got, err := io.ReadAll(rc)
	_ = rc.Close()
	if err != nil || !bytes.Equal(got, objects[a][10:10+3*DiskChunkPageSize]) {
		t.Fatalf("reader of an evicted file: %d bytes, %v", len(got), err)
	}
	if files := d.Files(); len(files) != 2 || files[0] != "01JAAAAAAAAAAAAAAAAAAAAAAA/chunks/000002" {
		t.Errorf("cached files %v, want the two most recent", files)
	}
	if s := d.Size(); s > 8*DiskChunkPageSize {
		t.Errorf("size %d over the limit", s)
	}
	if e := testCounter(t, reg, "stevedore_store_chunk_disk_cache_evictions_total"); e != 1 {
		t.Errorf("%v evictions, want 1", e)
	}
	// The evicted object is read again correctly.
	check(a, 0, 4*DiskChunkPageSize)

	// A cold reader closed before its end still caches whole pages.
	b := "01JBBBBBBBBBBBBBBBBBBBBBBB/chunks/000001"
	d2, err := NewDiskChunks(cb, filepath.Join(t.TempDir(), "chunks"), 8*DiskChunkPageSize, logr.Discard(), nil)
	if err != nil {
		t.Fatal(err)
	}
	rc, err = d2.GetRange(ctx, b, 100, 2*DiskChunkPageSize)
	if err != nil {
		t.Fatal(err)
	}
	head := make([]byte, 10)
	if _, err := io.ReadFull(rc, head); err != nil || !bytes.Equal(head, objects[b][100:110]) {
		t.Fatalf("cold partial read: %x, %v", head, err)
	}
	_ = rc.Close()
	before := cb.getRanges.Load()
	if got := readRange(t, d2, b, 0, 3*DiskChunkPageSize); !bytes.Equal(got, objects[b][:3*DiskChunkPageSize]) {
		t.Fatal("pages cached by a closed cold reader differ from the object")
	}
	if n := cb.getRanges.Load(); n != before {
		t.Errorf("pages of a cold reader closed early were fetched again (%d reads)", n-before)
	}

	// Other objects pass through.
	if got := readRange(t, d, "01JAAAAAAAAAAAAAAAAAAAAAAA/index", 1, 3); string(got) != "nde" {
		t.Errorf("index range: %q", got)
	}
	if _, err := NewDiskChunks(cb, t.TempDir(), 100, logr.Discard(), nil); err == nil {
		t.Error("a cache smaller than four pages was accepted")
	}
}
