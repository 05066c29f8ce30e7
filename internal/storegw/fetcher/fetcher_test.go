package fetcher

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/go-logr/logr"
	"github.com/oklog/ulid/v2"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/prometheus/tsdb"
	"github.com/thanos-io/objstore/providers/filesystem"

	"github.com/stevedore-dev/stevedore/internal/block"
)

var t0 = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)

func newID(t *testing.T, at time.Time, seed byte) ulid.ULID {
	t.Helper()
	return ulid.MustNew(ulid.Timestamp(at), bytes.NewReader(bytes.Repeat([]byte{seed}, 16)))
}

func meta(id ulid.ULID, mint, maxt int64, lbls map[string]string, sources ...ulid.ULID) *block.Meta {
	m := &block.Meta{BlockMeta: tsdb.BlockMeta{ULID: id, MinTime: mint, MaxTime: maxt, Version: 1}}
	m.Thanos.Labels = lbls
	m.Thanos.Source = block.SourceSidecar
	if len(sources) == 0 {
		sources = []ulid.ULID{id}
	}
	m.Compaction.Sources = sources
	return m
}

func upload(t *testing.T, bkt *filesystem.Bucket, name string, v any) {
	t.Helper()
	var b []byte
	switch v := v.(type) {
	case []byte:
		b = v
	default:
		var err error
		if b, err = json.Marshal(v); err != nil {
			t.Fatal(err)
		}
	}
	if err := bkt.Upload(context.Background(), name, bytes.NewReader(b)); err != nil {
		t.Fatal(err)
	}
}

func ids(m map[ulid.ULID]*block.Meta) []ulid.ULID {
	out := make([]ulid.ULID, 0, len(m))
	for id := range m {
		out = append(out, id)
	}
	slices.SortFunc(out, func(a, b ulid.ULID) int { return a.Compare(b) })
	return out
}

func TestFetchAndFilters(t *testing.T) {
	ctx := context.Background()
	bkt, err := filesystem.NewBucket(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	old := t0.Add(-time.Hour)
	var (
		a        = newID(t, old, 1)
		b        = newID(t, old, 2)
		ab       = newID(t, old, 3) // compaction of a and b
		fresh    = newID(t, t0.Add(-time.Minute), 4)
		marked   = newID(t, old, 5)
		recent   = newID(t, old, 6) // marked, but within the delay
		partial  = newID(t, old, 7)
		corrupt  = newID(t, old, 8)
		late     = newID(t, old, 9)
		otherLbl = newID(t, old, 10)
	)
	eu := map[string]string{"cluster": "eu"}
	for _, m := range []*block.Meta{
		meta(a, 0, 100, eu), meta(b, 100, 200, eu), meta(ab, 0, 200, eu, a, b),
		meta(fresh, 200, 300, eu), meta(marked, 300, 400, eu), meta(recent, 400, 500, eu),
		meta(late, 10_000, 20_000, eu), meta(otherLbl, 0, 100, map[string]string{"cluster": "us"}),
	} {
		upload(t, bkt, block.MetaObject(m.ULID), m)
	}
	upload(t, bkt, block.IndexObject(partial), []byte("index"))
	upload(t, bkt, block.MetaObject(corrupt), []byte("{not json"))
	upload(t, bkt, block.DeletionMarkObject(marked), block.DeletionMark{ID: marked, Version: 1, DeletionTime: t0.Add(-48 * time.Hour).Unix()})
	upload(t, bkt, block.DeletionMarkObject(recent), block.DeletionMark{ID: recent, Version: 1, DeletionTime: t0.Add(-time.Hour).Unix()})

	relabel, err := ParseRelabelConfig([]byte(`
- action: drop
  source_labels: [cluster]
  regex: us
`))
	if err != nil {
		t.Fatal(err)
	}
	maxT := TimeOrDuration{Time: ptr(time.UnixMilli(5000))}
	now := func() time.Time { return t0 }
	cacheDir := filepath.Join(t.TempDir(), CacheDirname)
	f, err := New(logr.Discard(), bkt, 3, cacheDir, prometheus.NewRegistry(),
		&TimePartitionFilter{MinTime: MinTimeUnbounded, MaxTime: maxT, Now: now},
		&LabelShardedFilter{Configs: relabel},
		&ConsistencyDelayFilter{Delay: 30 * time.Minute, Now: now},
		&DeletionMarkFilter{Bkt: bkt, Delay: 24 * time.Hour, Concurrency: 2, Now: now},
		DeduplicateFilter{},
	)
	if err != nil {
		t.Fatal(err)
	}
	for range 2 { // The second run reads metas from the caches.
		res, err := f.Fetch(ctx)
		if err != nil {
			t.Fatal(err)
		}
		want := []ulid.ULID{ab, recent}
		slices.SortFunc(want, func(a, b ulid.ULID) int { return a.Compare(b) })
		if got := ids(res.Metas); !slices.Equal(got, want) {
			t.Fatalf("metas %v, want %v", got, want)
		}
		if _, ok := res.Partial[partial]; !ok {
			t.Fatalf("partial block not reported: %v", res.Partial)
		}
		if _, ok := res.Partial[corrupt]; !ok {
			t.Fatalf("corrupted meta not reported: %v", res.Partial)
		}
		wantCounts := Counts{StateLoaded: 2, StateNoMeta: 1, StateCorrupted: 1, StateTimeExcluded: 1, StateLabelExclude: 1,
			StateTooFresh: 1, StateMarked: 1, StateDuplicate: 2}
		for k, v := range wantCounts {
			if res.Counts[k] != v {
				t.Errorf("count %s = %d, want %d (all %v)", k, res.Counts[k], v, res.Counts)
			}
		}
	}
	if _, err := os.Stat(filepath.Join(cacheDir, a.String(), block.MetaFilename)); err != nil {
		t.Fatalf("meta not cached on disk: %v", err)
	}
	// Blocks that leave the bucket leave the disk cache.
	if err := bkt.Delete(ctx, block.MetaObject(a)); err != nil {
		t.Fatal(err)
	}
	if _, err := f.Fetch(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(cacheDir, a.String())); !os.IsNotExist(err) {
		t.Fatalf("cached meta of deleted block kept: %v", err)
	}
}

func ptr[T any](v T) *T { return &v }

func TestParseTimeOrDuration(t *testing.T) {
	now := time.Date(2026, 3, 1, 0, 0, 0, 0, time.UTC)
	for _, tc := range []struct {
		in   string
		want time.Time
		err  bool
	}{
		{"2026-01-02T03:04:05Z", time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC), false},
		{"-2w", now.Add(-14 * 24 * time.Hour), false},
		{"-36h", now.Add(-36 * time.Hour), false},
		{"1d", now.Add(24 * time.Hour), false},
		{"yesterday", time.Time{}, true},
		{"", time.Time{}, true},
	} {
		v, err := ParseTimeOrDuration(tc.in)
		if (err != nil) != tc.err {
			t.Fatalf("%q: err %v", tc.in, err)
		}
		if err == nil && v.Millis(now) != tc.want.UnixMilli() {
			t.Fatalf("%q: %v, want %v", tc.in, time.UnixMilli(v.Millis(now)).UTC(), tc.want)
		}
	}
}

func TestParseRelabelConfig(t *testing.T) {
	for _, tc := range []struct {
		name string
		yaml string
		err  bool
	}{
		{"hashmod shard", "- action: hashmod\n  source_labels: [__block_id]\n  target_label: shard\n  modulus: 3\n- action: keep\n  source_labels: [shard]\n  regex: \"1\"\n", false},
		{"replace not allowed", "- action: replace\n  target_label: x\n", true},
		{"hashmod without modulus", "- action: hashmod\n  source_labels: [__block_id]\n  target_label: shard\n", true},
		{"not a list", "action: keep", true},
		{"unknown field", "- action: keep\n  sauce: x\n", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := ParseRelabelConfig([]byte(tc.yaml))
			if (err != nil) != tc.err {
				t.Fatalf("err = %v, want error %v", err, tc.err)
			}
		})
	}
}
