package shipper

import (
	"context"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/go-logr/logr"
	"github.com/oklog/ulid/v2"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/thanos-io/objstore"

	"github.com/stevedore-dev/stevedore/internal/block"
	"github.com/stevedore-dev/stevedore/internal/testutil/blockgen"
)

var extLabels = labels.FromStrings("cluster", "test", "replica", "0")

func ext() labels.Labels { return extLabels }

// writeBlock writes a 2h block starting at hour h.
func writeBlock(t *testing.T, dir string, h int64, series int) ulid.ULID {
	t.Helper()
	start := h * time.Hour.Milliseconds()
	id, err := blockgen.Write(context.Background(), dir, blockgen.Spec{
		MinTime: start, MaxTime: start + 2*time.Hour.Milliseconds(), Series: series, Step: 60_000, Seed: h,
	})
	if err != nil {
		t.Fatalf("write block: %v", err)
	}
	return id
}

// setLevel rewrites a block's compaction level, as Prometheus compaction
// would have.
func setLevel(t *testing.T, dir string, id ulid.ULID, level int) {
	t.Helper()
	m, err := block.ReadMetaFromDir(filepath.Join(dir, id.String()))
	if err != nil {
		t.Fatal(err)
	}
	m.Compaction.Level = level
	if err := m.WriteToDir(filepath.Join(dir, id.String())); err != nil {
		t.Fatal(err)
	}
}

func bucketBlocks(t *testing.T, bkt objstore.Bucket) map[string]bool {
	t.Helper()
	out := map[string]bool{}
	if err := bkt.Iter(context.Background(), "", func(name string) error {
		if id, ok := block.IsBlockDir(name); ok {
			has, err := bkt.Exists(context.Background(), block.MetaObject(id))
			if err != nil {
				return err
			}
			out[id.String()] = has
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	return out
}

func TestSyncUploadsEligibleBlocksOnce(t *testing.T) {
	for _, tc := range []struct {
		name            string
		uploadCompacted bool
		hash            block.HashFunc
	}{
		{name: "defaults"},
		{name: "upload compacted with SHA256", uploadCompacted: true, hash: block.HashSHA256},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx := context.Background()
			dir := t.TempDir()
			b1 := writeBlock(t, dir, 0, 5)
			b2 := writeBlock(t, dir, 2, 5)
			compacted := writeBlock(t, dir, 4, 5)
			setLevel(t, dir, compacted, 2)
			// Not blocks: a half-written block and a random directory.
			if err := os.MkdirAll(filepath.Join(dir, b1.String()+".tmp-for-creation"), 0o755); err != nil {
				t.Fatal(err)
			}
			if err := os.MkdirAll(filepath.Join(dir, "wal"), 0o755); err != nil {
				t.Fatal(err)
			}
			bkt := objstore.NewInMemBucket()
			s := New(logr.Discard(), nil, dir, bkt, ext, WithUploadCompacted(tc.uploadCompacted), WithHashFunc(tc.hash))

			n, err := s.Sync(ctx)
			if err != nil {
				t.Fatalf("sync: %v", err)
			}
			want := []ulid.ULID{b1, b2}
			if tc.uploadCompacted {
				want = append(want, compacted)
			}
			if n != len(want) {
				t.Errorf("uploaded %d blocks, want %d", n, len(want))
			}
			got := bucketBlocks(t, bkt)
			if len(got) != len(want) {
				t.Errorf("bucket has blocks %v, want %v", got, want)
			}
			for _, id := range want {
				if !got[id.String()] {
					t.Errorf("block %s has no meta.json in the bucket", id)
				}
				checkMeta(t, bkt, dir, id, tc.hash)
			}
			sm, err := ReadMetaFile(dir)
			if err != nil {
				t.Fatal(err)
			}
			slices.SortFunc(want, func(a, b ulid.ULID) int { return a.Compare(b) })
			slices.SortFunc(sm.Uploaded, func(a, b ulid.ULID) int { return a.Compare(b) })
			if !slices.Equal(sm.Uploaded, want) {
				t.Errorf("shipper file lists %v, want %v", sm.Uploaded, want)
			}
			if _, err := os.Stat(filepath.Join(dir, stagingDir)); err != nil && !os.IsNotExist(err) {
				t.Fatal(err)
			} else if err == nil {
				entries, _ := os.ReadDir(filepath.Join(dir, stagingDir))
				if len(entries) > 0 {
					t.Errorf("staging directory not cleaned: %v", entries)
				}
			}

			// A second sync uploads nothing, even with the shipper file lost.
			if err := os.Remove(filepath.Join(dir, MetaFilename)); err != nil {
				t.Fatal(err)
			}
			if n, err := s.Sync(ctx); err != nil || n != 0 {
				t.Errorf("second sync uploaded %d, err %v; want 0, nil", n, err)
			}
			sm2, err := ReadMetaFile(dir)
			if err != nil || len(sm2.Uploaded) != len(want) {
				t.Errorf("rebuilt shipper file %v, err %v", sm2, err)
			}
			st := s.Status()
			if st.Uploaded != len(want) || st.Pending != 0 || st.Failed != 0 {
				t.Errorf("status %+v", st)
			}
			if st.MinTime != 0 {
				t.Errorf("min time %d, want 0", st.MinTime)
			}
		})
	}
}

func checkMeta(t *testing.T, bkt objstore.Bucket, dir string, id ulid.ULID, hf block.HashFunc) {
	t.Helper()
	r, err := bkt.Get(context.Background(), block.MetaObject(id))
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = r.Close() }()
	m, err := block.ReadMeta(r)
	if err != nil {
		t.Fatal(err)
	}
	if !labels.Equal(labels.FromMap(m.Thanos.Labels), extLabels) {
		t.Errorf("meta labels %v, want %v", m.Thanos.Labels, extLabels)
	}
	if m.Thanos.Source != block.SourceSidecar || m.Thanos.Version != 1 || m.Thanos.UploadTime.IsZero() {
		t.Errorf("thanos section %+v", m.Thanos)
	}
	if len(m.Thanos.SegmentFiles) == 0 || m.Thanos.SegmentFiles[0] != "000001" {
		t.Errorf("segment files %v", m.Thanos.SegmentFiles)
	}
	local := map[string]int64{}
	for _, f := range m.Thanos.Files {
		local[f.RelPath] = f.SizeBytes
		if f.RelPath == block.MetaFilename {
			continue
		}
		attrs, err := bkt.Attributes(context.Background(), id.String()+"/"+f.RelPath)
		if err != nil {
			t.Errorf("file %s listed but not uploaded: %v", f.RelPath, err)
			continue
		}
		if attrs.Size != f.SizeBytes {
			t.Errorf("file %s: size %d in bucket, %d in meta", f.RelPath, attrs.Size, f.SizeBytes)
		}
		if (f.Hash != nil) != (hf == block.HashSHA256) {
			t.Errorf("file %s: hash %v with hash func %q", f.RelPath, f.Hash, hf)
		}
		if f.Hash != nil {
			want, err := block.FileSHA256(filepath.Join(dir, id.String(), filepath.FromSlash(f.RelPath)))
			if err != nil || f.Hash.Value != want {
				t.Errorf("file %s: hash %s, want %s (%v)", f.RelPath, f.Hash.Value, want, err)
			}
		}
	}
	if _, ok := local["index"]; !ok {
		t.Errorf("files %v lack index", m.Thanos.Files)
	}
}

func TestSyncSkipsEmptyAndKnownBlocks(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	id := writeBlock(t, dir, 0, 3)
	empty := writeBlock(t, dir, 2, 3)
	m, err := block.ReadMetaFromDir(filepath.Join(dir, empty.String()))
	if err != nil {
		t.Fatal(err)
	}
	m.Stats.NumSamples = 0
	if err := m.WriteToDir(filepath.Join(dir, empty.String())); err != nil {
		t.Fatal(err)
	}
	// A corrupt shipper file is rebuilt, not fatal.
	if err := os.WriteFile(filepath.Join(dir, MetaFilename), []byte("{not json"), 0o644); err != nil {
		t.Fatal(err)
	}
	bkt := objstore.NewInMemBucket()
	s := New(logr.Discard(), nil, dir, bkt, ext)
	if n, err := s.Sync(ctx); err != nil || n != 1 {
		t.Fatalf("sync uploaded %d, err %v; want 1", n, err)
	}
	got := bucketBlocks(t, bkt)
	if !got[id.String()] || len(got) != 1 {
		t.Errorf("bucket blocks %v, want only %s", got, id)
	}
}

func TestSyncRefusesWithoutExternalLabels(t *testing.T) {
	dir := t.TempDir()
	writeBlock(t, dir, 0, 1)
	bkt := objstore.NewInMemBucket()
	s := New(logr.Discard(), nil, dir, bkt, func() labels.Labels { return labels.EmptyLabels() }, WithRetries(1, time.Millisecond))
	if _, err := s.Sync(context.Background()); err == nil {
		t.Fatal("sync without external labels succeeded")
	}
	if got := bucketBlocks(t, bkt); len(got) != 0 {
		t.Errorf("bucket has %v", got)
	}
	if st := s.Status(); st.Pending != 1 || st.Failed != 1 || st.LastError == "" {
		t.Errorf("status %+v", st)
	}
}

func TestMetaFileRoundTrip(t *testing.T) {
	dir := t.TempDir()
	id := ulid.MustParse("01FDBCBBFAWYD0DNF4XA2AQ1KC")
	if err := WriteMetaFile(dir, &Meta{Version: MetaVersion1}); err != nil {
		t.Fatal(err)
	}
	b, _ := os.ReadFile(filepath.Join(dir, MetaFilename))
	if string(b) != "{\n\t\"version\": 1,\n\t\"uploaded\": []\n}" {
		t.Errorf("empty file %q", b)
	}
	if err := WriteMetaFile(dir, &Meta{Version: MetaVersion1, Uploaded: []ulid.ULID{id}}); err != nil {
		t.Fatal(err)
	}
	m, err := ReadMetaFile(dir)
	if err != nil || len(m.Uploaded) != 1 || m.Uploaded[0] != id {
		t.Errorf("read %v, %v", m, err)
	}
}
