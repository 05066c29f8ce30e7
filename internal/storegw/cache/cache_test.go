package cache

import (
	"bytes"
	"context"
	"io"
	"math/rand"
	"testing"

	"github.com/go-logr/logr"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/thanos-io/objstore/providers/filesystem"
)

func TestInMemoryLRU(t *testing.T) {
	c := NewInMemory("test", 3*itemSize("k0", make([]byte, 100)), 1000, nil)
	ctx := context.Background()
	for _, k := range []string{"k0", "k1", "k2"} {
		c.Store(map[string][]byte{k: make([]byte, 100)}, 0)
	}
	_ = c.Fetch(ctx, []string{"k0"}) // k0 is now the most recently used.
	c.Store(map[string][]byte{"k3": make([]byte, 100)}, 0)
	got := c.Fetch(ctx, []string{"k0", "k1", "k2", "k3"})
	for k, want := range map[string]bool{"k0": true, "k1": false, "k2": true, "k3": true} {
		if _, ok := got[k]; ok != want {
			t.Errorf("%s cached=%v, want %v", k, ok, want)
		}
	}
	c.Store(map[string][]byte{"huge": make([]byte, 5000)}, 0)
	if _, ok := c.Fetch(ctx, []string{"huge"})["huge"]; ok {
		t.Error("item over max_item_size was cached")
	}
}

func TestCachingBucketGetRange(t *testing.T) {
	ctx := context.Background()
	fs, err := filesystem.NewBucket(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	data := make([]byte, 100_000)
	rnd := rand.New(rand.NewSource(1))
	rnd.Read(data)
	const name = "01JAAAAAAAAAAAAAAAAAAAAAAA/chunks/000001"
	if err := fs.Upload(ctx, name, bytes.NewReader(data)); err != nil {
		t.Fatal(err)
	}
	cfg, err := ParseBucketCacheConfig([]byte("type: IN-MEMORY\nchunk_subrange_size: 1000\nmax_chunks_get_range_requests: 2\n"))
	if err != nil {
		t.Fatal(err)
	}
	reg := prometheus.NewRegistry()
	cb, err := NewCachingBucketFromConfig(fs, cfg, logr.Discard(), reg)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct{ off, length int64 }{
		{0, 10}, {999, 2}, {500, 5000}, {0, 100_000}, {99_990, 100}, {42_000, 1}, {12_345, 23_456},
	} {
		for range 2 { // Cold, then warm.
			rc, err := cb.GetRange(ctx, name, tc.off, tc.length)
			if err != nil {
				t.Fatal(err)
			}
			got, _ := io.ReadAll(rc)
			end := min(tc.off+tc.length, int64(len(data)))
			if !bytes.Equal(got, data[tc.off:end]) {
				t.Fatalf("range %d+%d: wrong bytes (%d returned)", tc.off, tc.length, len(got))
			}
		}
	}
	if h := testCounter(t, reg, "thanos_store_bucket_cache_operation_hits_total"); h == 0 {
		t.Fatal("no cache hits")
	}
	// Meta files: content and non-existence are cached.
	if _, err := cb.Get(ctx, "01JAAAAAAAAAAAAAAAAAAAAAAA/meta.json"); !cb.IsObjNotFoundErr(err) {
		t.Fatalf("missing meta: %v", err)
	}
	if _, err := cb.Get(ctx, "01JAAAAAAAAAAAAAAAAAAAAAAA/meta.json"); !cb.IsObjNotFoundErr(err) {
		t.Fatalf("missing meta (cached): %v", err)
	}
}

func testCounter(t *testing.T, reg *prometheus.Registry, name string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var sum float64
	for _, mf := range mfs {
		if mf.GetName() == name {
			for _, m := range mf.GetMetric() {
				sum += m.GetCounter().GetValue()
			}
		}
	}
	return sum
}

func TestParseConfigs(t *testing.T) {
	for _, tc := range []struct {
		name, yaml string
		bucket     bool
		err        bool
	}{
		{"index in-memory", "type: IN-MEMORY\nconfig:\n  max_size: 1GB\n  max_item_size: 100MB\n", false, false},
		{"index memcached", "type: MEMCACHED\nconfig:\n  addresses: [127.0.0.1:11211]\n  timeout: 1s\n", false, false},
		{"index redis unsupported", "type: REDIS\n", false, true},
		{"index unknown item", "type: IN-MEMORY\nenabled_items: [Chunks]\n", false, true},
		{"index typo", "type: IN-MEMORY\nconfg: {}\n", false, true},
		{"bucket memcached", "type: MEMCACHED\nconfig:\n  addresses: [127.0.0.1:11211]\nchunk_subrange_size: 16000\nmax_chunks_get_range_requests: 3\n", true, false},
		{"bucket bad subrange", "type: IN-MEMORY\nchunk_subrange_size: -1\n", true, true},
		{"bucket missing type", "chunk_subrange_size: 100\n", true, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var err error
			if tc.bucket {
				_, err = ParseBucketCacheConfig([]byte(tc.yaml))
			} else {
				_, err = ParseIndexCacheConfig([]byte(tc.yaml))
			}
			if (err != nil) != tc.err {
				t.Fatalf("err = %v, want error %v", err, tc.err)
			}
		})
	}
}
