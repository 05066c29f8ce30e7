package bucketstore

import (
	"context"
	"path/filepath"
	"testing"

	"github.com/go-logr/logr"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/thanos-io/objstore/providers/filesystem"
	"google.golang.org/grpc"

	"github.com/stevedore-dev/stevedore/internal/block"
	"github.com/stevedore-dev/stevedore/internal/storegw/cache"
	"github.com/stevedore-dev/stevedore/internal/storegw/fetcher"
	"github.com/stevedore-dev/stevedore/internal/storepb"
	"github.com/stevedore-dev/stevedore/internal/testutil/blockgen"
)

// countingStream is a Series stream that counts what it is sent.
type countingStream struct {
	grpc.ServerStream
	ctx            context.Context
	series, chunks int
}

func (c *countingStream) Context() context.Context { return c.ctx }

func (c *countingStream) Send(r *storepb.SeriesResponse) error {
	list := []*storepb.Series{r.GetSeries()}
	if b := r.GetBatch(); b != nil {
		list = b.GetSeries()
	}
	for _, s := range list {
		if s != nil {
			c.series++
			c.chunks += len(s.GetChunks())
		}
	}
	return nil
}

// BenchmarkSeries replays the query corpus of hack/bench-store.sh (see
// internal/storegw/benchtool) on a smaller bucket of the same shape: blocks
// of two clusters, 2×5000 float series and 200 native histograms each, served
// from a filesystem bucket with the default in-memory index cache.
func BenchmarkSeries(b *testing.B) {
	const (
		blocks = 2 // per cluster
		step   = 30_000
	)
	ctx := context.Background()
	bdir, local := b.TempDir(), b.TempDir()
	bkt, err := filesystem.NewBucket(bdir)
	if err != nil {
		b.Fatal(err)
	}
	for i := range blocks {
		for c, cluster := range []string{"eu", "us"} {
			id, err := blockgen.Write(ctx, local, blockgen.Spec{
				MinTime: int64(i) * 2 * hour, MaxTime: int64(i+1) * 2 * hour, Step: step,
				Series: 5000, Metrics: []string{"http_requests_total", "cpu_seconds_total"}, HistogramSeries: 200, Seed: int64(i*2 + c),
			})
			if err != nil {
				b.Fatal(err)
			}
			if _, err := blockgen.SetThanosMeta(local, id, map[string]string{"cluster": cluster}, block.SourceSidecar); err != nil {
				b.Fatal(err)
			}
			if err := blockgen.Upload(ctx, bkt, local, id); err != nil {
				b.Fatal(err)
			}
		}
	}
	reg := prometheus.NewRegistry()
	mf, err := fetcher.New(logr.Discard(), bkt, 4, filepath.Join(b.TempDir(), "meta"), reg)
	if err != nil {
		b.Fatal(err)
	}
	store, err := New(bkt, mf, Options{
		Logger: logr.Discard(), Registry: reg, Dir: b.TempDir(), BlockSyncConcurrency: 2, PostingOffsetsInMemSampling: 32,
		IndexCache: cache.NewIndexCache(cache.NewInMemory("index", 250<<20, 125<<20, reg), 0, nil, reg),
	})
	if err != nil {
		b.Fatal(err)
	}
	if err := store.InitialSync(ctx); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = store.Close() })

	maxt := int64(blocks) * 2 * hour
	m := func(t labels.MatchType, n, v string) *labels.Matcher { return labels.MustNewMatcher(t, n, v) }
	for _, q := range []struct {
		name  string
		ms    []*labels.Matcher
		hours int64
	}{
		{"one_series_1h", []*labels.Matcher{m(labels.MatchEqual, "__name__", "http_requests_total"), m(labels.MatchEqual, "instance", "instance-0042")}, 1},
		{"job_regex_2h", []*labels.Matcher{m(labels.MatchEqual, "__name__", "cpu_seconds_total"), m(labels.MatchRegexp, "job", "job-1|job-2"), m(labels.MatchEqual, "zone", "a")}, 2},
		{"instance_prefix_6h", []*labels.Matcher{m(labels.MatchEqual, "__name__", "http_requests_total"), m(labels.MatchRegexp, "instance", "instance-00[0-4].")}, 6},
		{"metric_all_range", []*labels.Matcher{m(labels.MatchEqual, "__name__", "http_requests_total")}, 0},
		{"histograms_all_range", []*labels.Matcher{m(labels.MatchEqual, "__name__", "test_histogram")}, 0},
		{"everything", []*labels.Matcher{m(labels.MatchRegexp, "__name__", ".+")}, 0},
	} {
		b.Run(q.name, func(b *testing.B) {
			mint := int64(0)
			if q.hours > 0 {
				mint = maxt - q.hours*hour
			}
			req := &storepb.SeriesRequest{MinTime: mint, MaxTime: maxt, Matchers: storepb.MatchersToProto(q.ms)}
			b.ReportAllocs()
			for b.Loop() {
				s := &countingStream{ctx: ctx}
				if err := store.Series(req, s); err != nil {
					b.Fatal(err)
				}
				if s.series == 0 {
					b.Fatal("no series")
				}
			}
		})
	}
}
