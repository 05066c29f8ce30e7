package indexheader

import (
	"context"
	"encoding/binary"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/oklog/ulid/v2"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/storage"
	"github.com/prometheus/prometheus/tsdb/encoding"
	"github.com/prometheus/prometheus/tsdb/index"
	"github.com/thanos-io/objstore/providers/filesystem"

	"github.com/stevedore-dev/stevedore/internal/block"
	"github.com/stevedore-dev/stevedore/internal/testutil/blockgen"
)

// writeBlock writes a block with several metrics into a filesystem bucket.
func writeBlock(t *testing.T) (*filesystem.Bucket, string, ulid.ULID) {
	t.Helper()
	ctx := context.Background()
	dir := t.TempDir()
	id, err := blockgen.Write(ctx, dir, blockgen.Spec{
		MinTime: 0, MaxTime: 2 * time.Hour.Milliseconds(), Step: 60_000,
		Series: 300, Metrics: []string{"a_metric", "b_metric", "c_metric"}, HistogramSeries: 20,
	})
	if err != nil {
		t.Fatal(err)
	}
	bkt, err := filesystem.NewBucket(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	if err := blockgen.Upload(ctx, bkt, dir, id); err != nil {
		t.Fatal(err)
	}
	return bkt, filepath.Join(dir, id.String(), block.IndexFilename), id
}

func TestBuildAndRead(t *testing.T) {
	ctx := context.Background()
	bkt, indexPath, id := writeBlock(t)
	ir, err := index.NewFileReader(indexPath, index.DecodePostingsRaw)
	if err != nil {
		t.Fatal(err)
	}
	defer ir.Close()
	indexBytes, err := os.ReadFile(indexPath)
	if err != nil {
		t.Fatal(err)
	}

	fn := filepath.Join(t.TempDir(), id.String(), Filename)
	size, err := Build(ctx, bkt, id, fn)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(fn + ".tmp"); !os.IsNotExist(err) {
		t.Fatalf("tmp file left behind: %v", err)
	}

	for _, sampling := range []int{1, 2, 32, 1000} {
		r, err := Open(fn, sampling)
		if err != nil {
			t.Fatal(err)
		}
		if r.Size() != size {
			t.Fatalf("size %d, built %d", r.Size(), size)
		}
		wantNames, err := ir.LabelNames(ctx)
		if err != nil {
			t.Fatal(err)
		}
		gotNames, _ := r.LabelNames()
		if !slices.Equal(gotNames, wantNames) {
			t.Fatalf("sampling %d: label names %v, want %v", sampling, gotNames, wantNames)
		}
		for _, name := range wantNames {
			wantVals, err := ir.SortedLabelValues(ctx, name, nil)
			if err != nil {
				t.Fatal(err)
			}
			gotVals, err := r.LabelValues(name)
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(gotVals, wantVals) {
				t.Fatalf("sampling %d: values of %s: %v, want %v", sampling, name, gotVals, wantVals)
			}
			// Every prefix of some values, and some that match nothing.
			prefixes := []string{"", "\x00", "\xff", "zzz"}
			for j, v := range wantVals {
				if j%7 != 0 && j != len(wantVals)-1 {
					continue
				}
				for i := range len(v) + 1 {
					prefixes = append(prefixes, v[:i], v[:i]+"\xff")
				}
			}
			odd := func(v string) bool { return len(v)%2 == 1 }
			for _, p := range prefixes {
				for _, keep := range []func(string) bool{nil, odd} {
					var want []string
					for _, v := range wantVals {
						if strings.HasPrefix(v, p) && (keep == nil || keep(v)) {
							want = append(want, v)
						}
					}
					got, err := r.MatchingLabelValues(name, p, keep)
					if err != nil {
						t.Fatal(err)
					}
					if !slices.Equal(got, want) {
						t.Fatalf("sampling %d: values of %s with prefix %q (filtered %v): %v, want %v", sampling, name, p, keep != nil, got, want)
					}
				}
			}
			// Ask for every value plus some that do not exist, interleaved.
			query := []string{""}
			for _, v := range wantVals {
				query = append(query, v, v+"\x00missing")
			}
			rngs, err := r.PostingsOffsets(name, query...)
			if err != nil {
				t.Fatal(err)
			}
			for i, v := range query {
				p, err := ir.Postings(ctx, name, v)
				if err != nil {
					t.Fatal(err)
				}
				want, err := index.ExpandPostings(p)
				if err != nil {
					t.Fatal(err)
				}
				if len(want) == 0 {
					if rngs[i] != NotFound {
						t.Fatalf("%s=%q: range %v for missing value", name, v, rngs[i])
					}
					continue
				}
				got := decodeRange(t, indexBytes, rngs[i])
				if !slices.Equal(got, want) {
					t.Fatalf("sampling %d: postings %s=%q: %v, want %v", sampling, name, v, got, want)
				}
			}
		}
		// Symbols: resolve every series' labels through the index-header.
		an, av := index.AllPostingsKey()
		p, _ := ir.Postings(ctx, an, av)
		dec := index.Decoder{LookupSymbol: r.LookupSymbol}
		var b labels.ScratchBuilder
		var n int
		for p.Next() {
			var want labels.ScratchBuilder
			if err := ir.Series(p.At(), &want, nil); err != nil {
				t.Fatal(err)
			}
			off := int(p.At()) * 16
			d := encoding.NewDecbufUvarintAt(byteSlice(indexBytes), off, castagnoli)
			if err := dec.Series(d.Get(), &b, nil); err != nil {
				t.Fatal(err)
			}
			if !labels.Equal(b.Labels(), want.Labels()) {
				t.Fatalf("series %d: %s, want %s", p.At(), b.Labels(), want.Labels())
			}
			n++
		}
		if n != 3*300+20 {
			t.Fatalf("%d series", n)
		}
		_ = r.Close()
	}
}

func decodeRange(t *testing.T, b []byte, r index.Range) []storage.SeriesRef {
	t.Helper()
	if r.Start < 0 || r.End > int64(len(b)) || r.End-r.Start < 4 {
		t.Fatalf("bad range %v (index %d bytes)", r, len(b))
	}
	d := b[r.Start:r.End]
	n := int(binary.BigEndian.Uint32(d))
	var out []storage.SeriesRef
	for i := 0; i < n; i++ {
		out = append(out, storage.SeriesRef(binary.BigEndian.Uint32(d[4+4*i:])))
	}
	return out
}

func TestOpenCorrupted(t *testing.T) {
	ctx := context.Background()
	bkt, _, id := writeBlock(t)
	fn := filepath.Join(t.TempDir(), Filename)
	if _, err := Build(ctx, bkt, id, fn); err != nil {
		t.Fatal(err)
	}
	good, err := os.ReadFile(fn)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name   string
		mutate func([]byte) []byte
	}{
		{"empty", func([]byte) []byte { return nil }},
		{"truncated", func(b []byte) []byte { return b[:len(b)/2] }},
		{"bad magic", func(b []byte) []byte { b[0] ^= 0xff; return b }},
		{"symbol flipped", func(b []byte) []byte { b[headerLen+20] ^= 0xff; return b }},
		{"postings table flipped", func(b []byte) []byte { b[len(b)-tocLen-100] ^= 0xff; return b }},
		{"toc flipped", func(b []byte) []byte { b[len(b)-5] ^= 0xff; return b }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := filepath.Join(t.TempDir(), Filename)
			if err := os.WriteFile(p, tc.mutate(slices.Clone(good)), 0o644); err != nil {
				t.Fatal(err)
			}
			if r, err := Open(p, 32); err == nil {
				_ = r.Close()
				t.Fatal("corrupted index-header opened without error")
			}
		})
	}
}

func TestLazyReader(t *testing.T) {
	ctx := context.Background()
	bkt, _, id := writeBlock(t)
	fn := filepath.Join(t.TempDir(), Filename)
	if _, err := Build(ctx, bkt, id, fn); err != nil {
		t.Fatal(err)
	}
	opens := 0
	l := NewLazyReader(fn, 32, func(time.Duration) { opens++ })
	if l.Loaded() {
		t.Fatal("loaded before first use")
	}
	names, err := l.LabelNames()
	if err != nil || len(names) == 0 {
		t.Fatalf("label names %v: %v", names, err)
	}
	if !l.Loaded() || opens != 1 {
		t.Fatalf("loaded=%v opens=%d after first use", l.Loaded(), opens)
	}
	if l.CloseIfIdle(time.Hour) {
		t.Fatal("closed while recently used")
	}
	if !l.CloseIfIdle(0) || l.Loaded() {
		t.Fatal("not closed when idle")
	}
	if _, err := l.LabelValues("job"); err != nil || opens != 2 {
		t.Fatalf("reopen: opens=%d err=%v", opens, err)
	}
	_ = l.Close()
	if _, err := l.LabelNames(); err == nil {
		t.Fatal("use after close succeeded")
	}
}
