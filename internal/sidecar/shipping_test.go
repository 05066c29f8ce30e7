package sidecar_test

import (
	"context"
	"fmt"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/oklog/ulid/v2"
	"github.com/prometheus/common/model"
	"github.com/thanos-io/objstore"

	"github.com/stevedore-dev/stevedore/internal/block"
	"github.com/stevedore-dev/stevedore/internal/shipper"
	"github.com/stevedore-dev/stevedore/internal/sidecar"
	"github.com/stevedore-dev/stevedore/internal/testserver"
	"github.com/stevedore-dev/stevedore/internal/testutil/blockgen"
)

// genBlocks writes n consecutive 2h blocks starting at base into dir.
func genBlocks(t testing.TB, dir string, base time.Time, n, series int) []ulid.ULID {
	t.Helper()
	var ids []ulid.ULID
	for i := range n {
		start := base.Add(time.Duration(i) * 2 * time.Hour).UnixMilli()
		id, err := blockgen.Write(context.Background(), dir, blockgen.Spec{
			MinTime: start, MaxTime: start + 2*time.Hour.Milliseconds(), Series: series, Step: 30_000,
		})
		if err != nil {
			t.Fatalf("generate block: %v", err)
		}
		ids = append(ids, id)
	}
	return ids
}

// bucketState lists the block prefixes in bkt and whether each has meta.json.
func bucketState(t *testing.T, bkt objstore.Bucket) map[ulid.ULID]bool {
	t.Helper()
	ctx := context.Background()
	out := map[ulid.ULID]bool{}
	if err := bkt.Iter(ctx, "", func(name string) error {
		id, ok := block.IsBlockDir(strings.TrimSuffix(name, "/"))
		if !ok {
			return nil
		}
		has, err := bkt.Exists(ctx, block.MetaObject(id))
		out[id] = has
		return err
	}); err != nil {
		t.Fatalf("list bucket: %v", err)
	}
	return out
}

func sortedIDs(ids []ulid.ULID) []ulid.ULID {
	out := slices.Clone(ids)
	slices.SortFunc(out, func(a, b ulid.ULID) int { return a.Compare(b) })
	return out
}

// waitUploaded waits until exactly want are in the bucket, each complete.
func waitUploaded(t *testing.T, bkt objstore.Bucket, want []ulid.ULID, timeout time.Duration) {
	t.Helper()
	want = sortedIDs(want)
	var got map[ulid.ULID]bool
	if err := eventually(timeout, func() error {
		got = bucketState(t, bkt)
		var complete []ulid.ULID
		for id, ok := range got {
			if ok {
				complete = append(complete, id)
			}
		}
		if !slices.Equal(sortedIDs(complete), want) {
			return fmt.Errorf("complete blocks %v, want %v", sortedIDs(complete), want)
		}
		return nil
	}); err != nil {
		t.Fatalf("uploads: %v (bucket %v)", err, got)
	}
	for id, ok := range got {
		if !ok {
			t.Errorf("block %s in the bucket without meta.json", id)
		}
	}
}

// checkShipperFile waits briefly for thanos.shipper.json to list exactly
// want: the shipper records a block right after its meta.json is uploaded.
func checkShipperFile(t *testing.T, dir string, want []ulid.ULID) {
	t.Helper()
	if err := eventually(5*time.Second, func() error {
		m, err := shipper.ReadMetaFile(dir)
		if err != nil {
			return fmt.Errorf("read shipper file: %w", err)
		}
		if got := sortedIDs(m.Uploaded); !slices.Equal(got, sortedIDs(want)) {
			return fmt.Errorf("thanos.shipper.json lists %v, want %v", got, sortedIDs(want))
		}
		return nil
	}); err != nil {
		t.Error(err)
	}
}

func TestShipperWithPrometheusAndMinIO(t *testing.T) {
	skipShort(t)
	for _, pv := range promVersions {
		t.Run(pv.name, func(t *testing.T) {
			ctx := context.Background()
			mio := testserver.StartMinIO(t)
			bkt := mio.Bucket(t, "blocks")
			dir := t.TempDir()
			base := time.Now().Truncate(2 * time.Hour).Add(-12 * time.Hour)
			ids := genBlocks(t, dir, base, 4, 20)
			// A compacted block is not shipped without --shipper.upload-compacted.
			compacted := genBlocks(t, dir, base.Add(-4*time.Hour), 1, 5)[0]
			m, err := block.ReadMetaFromDir(filepath.Join(dir, compacted.String()))
			if err != nil {
				t.Fatal(err)
			}
			m.Compaction.Level = 2
			if err := m.WriteToDir(filepath.Join(dir, compacted.String())); err != nil {
				t.Fatal(err)
			}
			prom := testserver.StartPrometheus(t, testserver.PrometheusOptions{Version: pv.version, DataDir: dir, ExternalLabels: testExtLabels})
			sc := startSidecar(t, sidecar.Config{
				PrometheusURL:  mustURL(t, prom.URL),
				TSDBPath:       dir,
				ObjstoreConfig: mio.ObjstoreConfig("blocks"),
				HashFunc:       block.HashSHA256,
				// A long scan interval: new blocks must be found by the watch.
				ShipInterval: 10 * time.Minute,
			})
			waitUploaded(t, bkt, ids, 30*time.Second)
			checkShipperFile(t, dir, ids)
			// The status is updated when the upload round ends, a moment after
			// the last meta.json lands in the bucket.
			if err := eventually(10*time.Second, func() error {
				st := sc.Status().Sidecar
				if st.Uploaded != int64(len(ids)) || st.Pending != 0 || st.LastUploadedBlock == "" || !st.UploadsEnabled || !st.PrometheusReachable {
					return fmt.Errorf("status %+v", st)
				}
				// The advertised range starts at the oldest local block.
				if st.MinTime != base.Add(-4*time.Hour).UnixMilli() {
					return fmt.Errorf("min time %d, want %d", st.MinTime, base.Add(-4*time.Hour).UnixMilli())
				}
				return nil
			}); err != nil {
				t.Error(err)
			}

			// A block Prometheus writes later is in the bucket within seconds.
			start := time.Now()
			newer := genBlocks(t, dir, base.Add(8*time.Hour), 1, 20)
			ids = append(ids, newer...)
			waitUploaded(t, bkt, ids, 10*time.Second)
			t.Logf("new block in the bucket %s after it appeared on disk", time.Since(start))
			checkShipperFile(t, dir, ids)

			for name, want := range map[string]float64{
				"thanos_shipper_uploads_total":         float64(len(ids)),
				"thanos_shipper_upload_failures_total": 0,
				"stevedore_shipper_pending_blocks":     0,
			} {
				if got := metricValue(t, sc, name); got != want {
					t.Errorf("%s = %v, want %v", name, got, want)
				}
			}
			if got := metricValue(t, sc, "stevedore_shipper_uploaded_bytes_total"); got <= 0 {
				t.Errorf("uploaded bytes %v", got)
			}

			// The real Thanos tools accept the blocks.
			out, err := testserver.RunThanos(t, 2*time.Minute, "tools", "bucket", "verify", "--objstore.config="+string(mio.ObjstoreConfig("blocks")))
			if err != nil || strings.Contains(out, "level=error") || strings.Contains(out, "level=warn") || !strings.Contains(out, "verify task completed") {
				t.Errorf("thanos tools bucket verify: %v\n%s", err, out)
			}
			store := testserver.StartThanosStore(t, mio.ObjstoreConfig("blocks"))
			q := testserver.StartThanosQuerier(t, []string{store.GRPCAddr})
			at := base.Add(5*time.Hour + 3*time.Minute)
			for _, query := range []string{`sum by (job) (rate(test_metric[5m]))`, `test_metric{instance="instance-0003"}`} {
				want, _, _, err := prom.API(t).Query(ctx, query, at)
				if err != nil {
					t.Fatal(err)
				}
				got, _, _, err := q.API(t).Query(ctx, query, at)
				if err != nil {
					t.Fatalf("thanos store %s: %v", query, err)
				}
				compareVectors(t, query, want.(model.Vector), got.(model.Vector))
			}
		})
	}
}

// TestShipperSurvivesBucketOutage stops MinIO while blocks appear and checks
// that everything is uploaded once it is back.
func TestShipperSurvivesBucketOutage(t *testing.T) {
	skipShort(t)
	mio := testserver.StartMinIO(t)
	bkt := mio.Bucket(t, "blocks")
	dir := t.TempDir()
	base := time.Now().Truncate(2 * time.Hour).Add(-24 * time.Hour)
	ids := genBlocks(t, dir, base, 2, 10)
	prom := testserver.StartPrometheus(t, testserver.PrometheusOptions{Version: testserver.Prometheus2, DataDir: dir, ExternalLabels: testExtLabels})
	sc := startSidecar(t, sidecar.Config{
		PrometheusURL:  mustURL(t, prom.URL),
		TSDBPath:       dir,
		ObjstoreConfig: mio.ObjstoreConfig("blocks"),
		ShipInterval:   2 * time.Second,
	})
	waitUploaded(t, bkt, ids, 30*time.Second)

	mio.Stop()
	more := genBlocks(t, dir, base.Add(4*time.Hour), 3, 10)
	// The shipper notices: failed syncs, pending blocks, an error in the status.
	if err := eventually(60*time.Second, func() error {
		st := sc.Status().Sidecar
		if st.Pending != int64(len(more)) || st.LastError == "" {
			return fmt.Errorf("status %+v", st)
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	time.Sleep(3 * time.Second)
	mio.Start()
	ids = append(ids, more...)
	waitUploaded(t, bkt, ids, 60*time.Second)
	checkShipperFile(t, dir, ids)
	if err := eventually(10*time.Second, func() error {
		if st := sc.Status().Sidecar; st.Pending != 0 || st.Uploaded != int64(len(ids)) || st.LastError != "" {
			return fmt.Errorf("status %+v", st)
		}
		return nil
	}); err != nil {
		t.Error(err)
	}
}
