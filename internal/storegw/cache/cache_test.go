package cache

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"math/rand"
	"strings"
	"testing"

	"github.com/go-logr/logr"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/thanos-io/objstore/providers/filesystem"
)

func TestInMemoryEviction(t *testing.T) {
	// One ring of 1000 bytes; items of 8+2+100 bytes: nine fit.
	c := NewInMemory("test", 1000, 500, nil)
	ctx := context.Background()
	val := func(i int) []byte { return bytes.Repeat([]byte{byte(i)}, 100) }
	for i := range 8 {
		c.Store(map[string][]byte{fmt.Sprintf("k%d", i): val(i)}, 0)
	}
	// k0 is in the older half of the ring: fetching it moves it to the head.
	if got := c.Fetch(ctx, []string{"k0"})["k0"]; !bytes.Equal(got, val(0)) {
		t.Fatalf("k0 = %x", got)
	}
	// Two more items wrap the ring over the old k0 and over k1.
	c.Store(map[string][]byte{"k8": val(8)}, 0)
	c.Store(map[string][]byte{"k9": val(9)}, 0)
	var keys []string
	for i := range 10 {
		keys = append(keys, fmt.Sprintf("k%d", i))
	}
	got := c.Fetch(ctx, keys)
	for i, k := range keys {
		want := i != 1
		if v, ok := got[k]; ok != want {
			t.Errorf("%s cached=%v, want %v", k, ok, want)
		} else if ok && !bytes.Equal(v, val(i)) {
			t.Errorf("%s = %x, want %x", k, v, val(i))
		}
	}
	c.Store(map[string][]byte{"huge": make([]byte, 600)}, 0)
	if _, ok := c.Fetch(ctx, []string{"huge"})["huge"]; ok {
		t.Error("item over max_item_size was cached")
	}
	// Fetched values are copies: writing over the ring does not change them.
	v := c.Fetch(ctx, []string{"k9"})["k9"]
	for i := range 30 {
		c.Store(map[string][]byte{fmt.Sprintf("x%d", i): val(100 + i)}, 0)
	}
	if !bytes.Equal(v, val(9)) {
		t.Error("a fetched value changed after later stores")
	}
	// Index entries of overwritten items are swept: the index stays bounded.
	if n := len(c.shards[0].index); n > 12 {
		t.Errorf("%d index entries for a ring of nine items", n)
	}
}

func TestInMemoryDisabled(t *testing.T) {
	c := NewInMemory("off", 0, 100, nil)
	c.Store(map[string][]byte{"k": []byte("v")}, 0)
	if got := c.Fetch(context.Background(), []string{"k"}); len(got) != 0 {
		t.Errorf("a zero-size cache returned %v", got)
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

// TestInMemoryItemSizeDefault: an unset max_item_size is half the default
// size but never more than half of max_size, so a small cache alone is valid
// (it used to fail with "max_item_size ... is larger than max_size").
func TestInMemoryItemSizeDefault(t *testing.T) {
	for _, tc := range []struct {
		config       string
		wantItemSize int64 // 0: an error naming both sizes
	}{
		{"max_size: 64MiB", 32 << 20},
		{"max_size: 1GiB", 125 << 20},
		{"max_size: 1GiB\nmax_item_size: 300MiB", 300 << 20},
		{"max_size: 64MiB\nmax_item_size: 100MiB", 0},
	} {
		t.Run(tc.config, func(t *testing.T) {
			c, err := ParseIndexCacheConfig([]byte("type: IN-MEMORY\nconfig:\n  " + strings.ReplaceAll(tc.config, "\n", "\n  ") + "\n"))
			if err != nil {
				t.Fatal(err)
			}
			ic, err := NewIndexCacheFromConfig(c, logr.Discard(), prometheus.NewRegistry())
			if tc.wantItemSize == 0 {
				if err == nil || !strings.Contains(err.Error(), "max_item_size 104857600 is larger than max_size 67108864") {
					t.Fatalf("err = %v, want max_item_size larger than max_size", err)
				}
				return
			}
			if err != nil {
				t.Fatalf("%s: %v", tc.config, err)
			}
			mem, ok := ic.backend.(*InMemory)
			if !ok {
				t.Fatalf("backend %T, want *InMemory", ic.backend)
			}
			if mem.maxItemSize != tc.wantItemSize {
				t.Errorf("max item size %d, want %d", mem.maxItemSize, tc.wantItemSize)
			}
		})
	}
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
