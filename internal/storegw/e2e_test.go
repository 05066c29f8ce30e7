package storegw_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/go-logr/logr"
	"github.com/oklog/ulid/v2"
	promv1 "github.com/prometheus/client_golang/api/prometheus/v1"
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/model"
	"github.com/thanos-io/objstore"
	"google.golang.org/protobuf/proto"

	"github.com/stevedore-dev/stevedore/internal/block"
	"github.com/stevedore-dev/stevedore/internal/server"
	"github.com/stevedore-dev/stevedore/internal/storegw"
	"github.com/stevedore-dev/stevedore/internal/storegw/cache"
	"github.com/stevedore-dev/stevedore/internal/storegw/fetcher"
	"github.com/stevedore-dev/stevedore/internal/storegw/indexheader"
	"github.com/stevedore-dev/stevedore/internal/storepb"
	"github.com/stevedore-dev/stevedore/internal/testserver"
	"github.com/stevedore-dev/stevedore/internal/testutil/blockgen"
)

const hourMs = int64(time.Hour / time.Millisecond)

// testBucket is a MinIO bucket holding the test blocks.
type testBucket struct {
	objstoreConfig []byte
	bkt            objstore.Bucket
	base           int64 // start of the data, Unix ms
	loaded         []ulid.ULID
	marked         ulid.ULID
	partial        ulid.ULID
}

// setupBucket writes: for cluster=eu two adjacent 2h blocks and one
// overlapping them, for cluster=us two adjacent blocks shifted by 1h, a
// deletion-marked block (marked 48h ago) and a partial block (no meta.json).
func setupBucket(t *testing.T) *testBucket {
	t.Helper()
	ctx := context.Background()
	mi := testserver.StartMinIO(t)
	tb := &testBucket{bkt: mi.Bucket(t, "blocks"), objstoreConfig: mi.ObjstoreConfig("blocks")}
	now := time.Now().UnixMilli()
	tb.base = (now - 12*hourMs) / (2 * hourMs) * (2 * hourMs)
	dir := t.TempDir()
	metrics := []string{"http_requests_total", "cpu_seconds_total"}
	eu := map[string]string{"cluster": "eu", "replica": "0"}
	us := map[string]string{"cluster": "us", "replica": "0"}
	specs := []struct {
		ext      map[string]string
		from, to int64
		series   int
		step     int64
	}{
		{eu, 0, 2, 800, 30_000},
		{eu, 2, 4, 800, 30_000},
		{eu, 3, 5, 300, 60_000},
		{us, 1, 3, 600, 30_000},
		{us, 3, 5, 600, 30_000},
		{eu, 5, 7, 200, 60_000}, // marked for deletion
		{us, 5, 7, 200, 60_000}, // partial
	}
	for i, s := range specs {
		id, err := blockgen.Write(ctx, dir, blockgen.Spec{
			MinTime: tb.base + s.from*hourMs, MaxTime: tb.base + s.to*hourMs, Step: s.step,
			Series: s.series, Metrics: metrics, HistogramSeries: 40, Seed: int64(i + 1),
		})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := blockgen.SetThanosMeta(dir, id, s.ext, block.SourceSidecar); err != nil {
			t.Fatal(err)
		}
		if err := blockgen.Upload(ctx, tb.bkt, dir, id); err != nil {
			t.Fatal(err)
		}
		switch i {
		case 5:
			tb.marked = id
			b, _ := json.Marshal(block.DeletionMark{ID: id, Version: block.MarkerVersion1, DeletionTime: time.Now().Add(-48 * time.Hour).Unix()})
			if err := tb.bkt.Upload(ctx, block.DeletionMarkObject(id), bytes.NewReader(b)); err != nil {
				t.Fatal(err)
			}
		case 6:
			tb.partial = id
			if err := tb.bkt.Delete(ctx, block.MetaObject(id)); err != nil {
				t.Fatal(err)
			}
		default:
			tb.loaded = append(tb.loaded, id)
		}
	}
	return tb
}

// agent is an in-process `agent store` with real HTTP and gRPC servers.
type agent struct {
	gw       *storegw.Gateway
	reg      *prometheus.Registry
	grpcAddr string
	httpAddr string
	cancel   context.CancelFunc
	done     chan error
}

func startAgent(t *testing.T, tb *testBucket, mutate func(*storegw.Config)) *agent {
	t.Helper()
	cfg := storegw.DefaultConfig()
	cfg.ObjstoreConfig = tb.objstoreConfig
	cfg.DataDir = t.TempDir()
	cfg.SyncInterval = time.Minute
	if mutate != nil {
		mutate(&cfg)
	}
	reg := prometheus.NewRegistry()
	logger := logr.Discard()
	gw, err := storegw.New(logger, reg, cfg)
	if err != nil {
		t.Fatal(err)
	}
	prober := server.NewProber()
	grpcSrv, err := server.NewGRPC(logger, "127.0.0.1:0", reg, prober, time.Second, gw.RegisterGRPC)
	if err != nil {
		t.Fatal(err)
	}
	httpSrv, err := server.NewHTTP(logger, "127.0.0.1:0", reg, prober, time.Second)
	if err != nil {
		t.Fatal(err)
	}
	gw.RegisterHTTP(httpSrv)
	ctx, cancel := context.WithCancel(context.Background())
	a := &agent{gw: gw, reg: reg, grpcAddr: grpcSrv.Addr(), httpAddr: httpSrv.Addr(), cancel: cancel, done: make(chan error, 3)}
	go func() { a.done <- grpcSrv.Serve(ctx) }()
	go func() { a.done <- httpSrv.Serve(ctx) }()
	go func() { a.done <- gw.Run(ctx, prober) }()
	t.Cleanup(func() { a.stop(t) })
	deadline := time.Now().Add(2 * time.Minute)
	for {
		if ok, _ := prober.IsReady(); ok {
			return a
		}
		if time.Now().After(deadline) {
			t.Fatalf("agent store not ready: %+v", gw.Status())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func (a *agent) stop(t testing.TB) {
	if a.cancel == nil {
		return
	}
	a.cancel()
	for range 3 {
		if err := <-a.done; err != nil {
			t.Errorf("agent store did not shut down cleanly: %v", err)
		}
	}
	a.cancel = nil
}

// metric sums the values of the named counter, gauge or histogram count.
func (a *agent) metric(t *testing.T, name string, match map[string]string) float64 {
	t.Helper()
	mfs, err := a.reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var sum float64
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
	next:
		for _, m := range mf.GetMetric() {
			for k, v := range match {
				if !hasLabel(m, k, v) {
					continue next
				}
			}
			switch {
			case m.Counter != nil:
				sum += m.GetCounter().GetValue()
			case m.Gauge != nil:
				sum += m.GetGauge().GetValue()
			case m.Histogram != nil:
				sum += float64(m.GetHistogram().GetSampleCount())
			}
		}
	}
	return sum
}

func hasLabel(m *dto.Metric, k, v string) bool {
	for _, l := range m.GetLabel() {
		if l.GetName() == k && l.GetValue() == v {
			return true
		}
	}
	return false
}

// corpus is the set of PromQL queries compared between the two stacks.
func corpus(base int64) (instant []string, ranged []string, times []time.Time) {
	instant = []string{
		`http_requests_total{job="job-1"}`,
		`http_requests_total{job!="job-1", zone="a"}`,
		`http_requests_total{instance=~"instance-00[0-4]."}`,
		`cpu_seconds_total{zone!~"a|b"}`,
		`{__name__=~"http_requests_total|cpu_seconds_total", job=~"job-0|job-3", instance=~"instance-01.*"}`,
		`http_requests_total{nonexistent="", instance="instance-0042"}`,
		`count({__name__=~".+"})`,
		`count by (__name__, cluster, replica) ({__name__=~".+"})`,
		`sum by (job) (rate(http_requests_total[5m]))`,
		`sum by (cluster, zone) (rate(cpu_seconds_total{cluster="eu"}[10m]))`,
		`histogram_quantile(0.9, sum by (job) (rate(test_histogram[5m])))`,
		`histogram_count(sum(test_histogram{cluster="us"}))`,
		`max_over_time(http_requests_total{instance="instance-0007"}[3h])`,
		`count_over_time(cpu_seconds_total{instance=~"instance-000[1-3]"}[90m])`,
	}
	ranged = []string{
		`sum by (job) (rate(http_requests_total[5m]))`,
		`count by (cluster) ({__name__=~"cpu_seconds_total|test_histogram"})`,
		`histogram_quantile(0.5, sum by (zone) (rate(test_histogram{job=~"job-[12]"}[10m])))`,
		`http_requests_total{instance="instance-0100", cluster="eu"}`,
		`sum(rate(cpu_seconds_total{zone!="c", job!~"job-0"}[15m]))`,
	}
	for _, h := range []float64{0.5, 1, 2, 2.02, 3, 3.5, 4, 4.9, 6} {
		times = append(times, time.UnixMilli(base+int64(h*float64(hourMs))))
	}
	return instant, ranged, times
}

// answers runs the corpus and label API calls against a querier and
// renders every answer as text.
func answers(t *testing.T, api promv1.API, base int64, short bool) map[string]string {
	t.Helper()
	ctx := context.Background()
	out := map[string]string{}
	instant, ranged, times := corpus(base)
	if short {
		instant, ranged, times = instant[:8], ranged[:2], times[:4]
	}
	for _, q := range instant {
		for _, ts := range times {
			v, _, _, err := api.Query(ctx, q, ts)
			out[fmt.Sprintf("instant %s @%d", q, ts.UnixMilli())] = render(v, err)
		}
	}
	r := promv1.Range{Start: time.UnixMilli(base), End: time.UnixMilli(base + 6*hourMs), Step: 5 * time.Minute}
	for _, q := range ranged {
		v, _, _, err := api.QueryRange(ctx, q, r)
		out["range "+q] = render(v, err)
	}
	start, end := time.UnixMilli(base), time.UnixMilli(base+6*hourMs)
	for _, ms := range [][]string{nil, {`{cluster="us"}`}, {`http_requests_total{zone="a"}`}} {
		names, _, _, err := api.LabelNames(ctx, ms, start, end)
		out[fmt.Sprintf("names %v", ms)] = fmt.Sprint(names, err)
	}
	for _, lv := range []struct {
		name string
		ms   []string
	}{
		{"job", nil}, {"__name__", nil}, {"cluster", nil}, {"__name__", []string{`{zone="a"}`}},
		{"instance", []string{`cpu_seconds_total{instance=~"instance-000.", cluster="us"}`}},
		{"zone", []string{`{__name__=~"test_.*", job!="job-0"}`}},
	} {
		vals, _, _, err := api.LabelValues(ctx, lv.name, lv.ms, start, end)
		out[fmt.Sprintf("values %s %v", lv.name, lv.ms)] = fmt.Sprint(vals, err)
	}
	series, _, _, err := api.Series(ctx, []string{`http_requests_total{job="job-2", instance=~"instance-00.*"}`}, start, end)
	ss := make([]string, 0, len(series))
	for _, s := range series {
		ss = append(ss, s.String())
	}
	sort.Strings(ss)
	out["series"] = fmt.Sprint(ss, err)
	return out
}

func render(v model.Value, err error) string {
	if err != nil {
		return "error: " + err.Error()
	}
	lines := strings.Split(v.String(), "\n")
	sort.Strings(lines)
	return strings.Join(lines, "\n")
}

func diffAnswers(t *testing.T, got, want map[string]string) {
	t.Helper()
	keys := make([]string, 0, len(want))
	for k := range want {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	bad := 0
	for _, k := range keys {
		if strings.HasPrefix(want[k], "error") {
			t.Errorf("%s: reference stack failed: %s", k, want[k])
		}
		if got[k] != want[k] {
			bad++
			if bad <= 5 {
				t.Errorf("%s:\nagent:  %.600s\nthanos: %.600s", k, got[k], want[k])
			}
		}
	}
	if bad > 0 {
		t.Errorf("%d of %d answers differ", bad, len(want))
	}
}

func nonEmpty(t *testing.T, ans map[string]string) {
	t.Helper()
	empty := 0
	for k, v := range ans {
		if v == "" || v == "[] <nil>" {
			empty++
			t.Logf("empty answer: %s", k)
		}
	}
	if empty > len(ans)/4 {
		t.Fatalf("%d of %d answers are empty: the corpus does not exercise the data", empty, len(ans))
	}
}

// TestAgainstThanos is the equivalence test: a real Thanos querier over
// `agent store` answers exactly like one over a real `thanos store`.
func TestAgainstThanos(t *testing.T) {
	if testing.Short() {
		t.Skip("starts MinIO and Thanos")
	}
	tb := setupBucket(t)
	thanosStore := testserver.StartThanosStore(t, tb.objstoreConfig)
	a := startAgent(t, tb, nil)

	// Exactly the complete, unmarked blocks are loaded.
	var loaded []ulid.ULID
	for _, m := range a.gw.Store().Blocks() {
		loaded = append(loaded, m.ULID)
	}
	want := slices.Clone(tb.loaded)
	slices.SortFunc(want, func(a, b ulid.ULID) int { return a.Compare(b) })
	slices.SortFunc(loaded, func(a, b ulid.ULID) int { return a.Compare(b) })
	if !slices.Equal(loaded, want) {
		t.Fatalf("loaded blocks %v, want %v (marked %s, partial %s)", loaded, want, tb.marked, tb.partial)
	}

	// The blocks API and the status document describe what is loaded.
	resp, err := http.Get("http://" + a.httpAddr + storegw.BlocksPath)
	if err != nil {
		t.Fatal(err)
	}
	var blocks storegw.BlocksResponse
	if err := json.NewDecoder(resp.Body).Decode(&blocks); err != nil {
		t.Fatal(err)
	}
	_ = resp.Body.Close()
	if blocks.Status != "success" || len(blocks.Data.Blocks) != len(tb.loaded) || blocks.Data.Blocks[0].Thanos.Labels["cluster"] == "" {
		t.Fatalf("blocks API: %+v", blocks)
	}
	st := a.gw.Status().Store
	if st.BlocksLoaded != int64(len(tb.loaded)) || !st.InitialSyncDone || st.LastSyncTime == nil || st.LastSyncError != "" ||
		st.MinTime != tb.base || st.MaxTime <= tb.base+4*hourMs || st.MaxTime > tb.base+5*hourMs || st.IndexHeaderBytes <= 0 {
		t.Fatalf("status: %+v", st)
	}
	if n := a.metric(t, "thanos_blocks_meta_synced", map[string]string{"state": "marked-for-deletion"}); n != 1 {
		t.Fatalf("thanos_blocks_meta_synced{state=marked-for-deletion} = %v", n)
	}
	if n := a.metric(t, "thanos_blocks_meta_synced", map[string]string{"state": "no-meta-json"}); n != 1 {
		t.Fatalf("thanos_blocks_meta_synced{state=no-meta-json} = %v", n)
	}

	// Index-headers are byte for byte those Thanos writes.
	for _, id := range tb.loaded {
		ours, err := os.ReadFile(filepath.Join(a.gw.Store().Dir(), id.String(), indexheader.Filename))
		if err != nil {
			t.Fatal(err)
		}
		theirs, err := os.ReadFile(filepath.Join(thanosStore.DataDir, id.String(), indexheader.Filename))
		if err != nil {
			t.Fatalf("thanos index-header: %v", err)
		}
		if !bytes.Equal(ours, theirs) {
			t.Fatalf("index-header of %s differs from Thanos's (%d vs %d bytes)", id, len(ours), len(theirs))
		}
		// And Thanos's file reads back with our reader.
		r, err := indexheader.Open(filepath.Join(thanosStore.DataDir, id.String(), indexheader.Filename), 32)
		if err != nil {
			t.Fatalf("open thanos index-header: %v", err)
		}
		_ = r.Close()
	}

	qThanos := testserver.StartThanosQuerier(t, []string{thanosStore.GRPCAddr})
	qAgent := testserver.StartThanosQuerier(t, []string{a.grpcAddr})
	start := time.Now()
	want2 := answers(t, qThanos.API(t), tb.base, false)
	t.Logf("thanos stack answered %d queries in %s", len(want2), time.Since(start))
	start = time.Now()
	got := answers(t, qAgent.API(t), tb.base, false)
	t.Logf("agent stack answered %d queries in %s", len(got), time.Since(start))
	nonEmpty(t, want2)
	diffAnswers(t, got, want2)
	// The default disk chunk cache answers the repeated chunk reads: the
	// corpus reads every block more than once.
	if h := a.metric(t, "stevedore_store_chunk_disk_cache_hits_total", nil); h == 0 {
		t.Errorf("no disk chunk cache hits after the corpus")
	}
	if n := a.metric(t, "stevedore_store_chunk_disk_cache_size_bytes", nil); n == 0 || n > float64(storegw.DefaultConfig().ChunkDiskCacheSize) {
		t.Errorf("disk chunk cache holds %v bytes", n)
	}

	// Vertical query sharding (query frontend): each shard holds the same
	// series as Thanos's shard, and the shards partition the answer.
	t.Run("query sharding", func(t *testing.T) {
		base := &storepb.SeriesRequest{MinTime: tb.base, MaxTime: tb.base + 6*hourMs,
			Matchers: []*storepb.LabelMatcher{{Type: storepb.LabelMatcher_RE, Name: "__name__", Value: "http_requests_total|test_histogram"}}}
		all := testserver.SeriesLabels(t, a.grpcAddr, base)
		if len(all) == 0 {
			t.Fatal("no series to shard")
		}
		for _, si := range []*storepb.ShardInfo{
			{TotalShards: 3, By: true, Labels: []string{"job"}},
			{TotalShards: 3, By: false, Labels: []string{"instance", "cluster"}},
		} {
			union := map[string]bool{}
			for k := range int64(3) {
				req := proto.Clone(base).(*storepb.SeriesRequest)
				req.ShardInfo = proto.Clone(si).(*storepb.ShardInfo)
				req.ShardInfo.ShardIndex = k
				got, want := testserver.SeriesLabels(t, a.grpcAddr, req), testserver.SeriesLabels(t, thanosStore.GRPCAddr, req)
				if !slices.Equal(got, want) {
					t.Fatalf("shard %d of %v: %d series, Thanos %d", k, si, len(got), len(want))
				}
				for _, n := range got {
					if union[n] {
						t.Fatalf("%s in two shards", n)
					}
					union[n] = true
				}
			}
			if len(union) != len(all) {
				t.Fatalf("shards of %v hold %d series, the unsharded answer %d", si, len(union), len(all))
			}
		}
	})

	t.Run("sharding", func(t *testing.T) {
		shard := func(i int) func(*storegw.Config) {
			return func(c *storegw.Config) {
				cfgs, err := fetcher.ParseRelabelConfig(fmt.Appendf(nil, `
- action: hashmod
  source_labels: [__block_id]
  target_label: shard
  modulus: 2
- action: keep
  source_labels: [shard]
  regex: "%d"
`, i))
				if err != nil {
					t.Fatal(err)
				}
				c.SelectorRelabel = cfgs
			}
		}
		s0, s1 := startAgent(t, tb, shard(0)), startAgent(t, tb, shard(1))
		seen := map[ulid.ULID]int{}
		for _, s := range []*agent{s0, s1} {
			for _, m := range s.gw.Store().Blocks() {
				seen[m.ULID]++
			}
		}
		if len(seen) != len(tb.loaded) {
			t.Fatalf("shards load %d distinct blocks, want %d", len(seen), len(tb.loaded))
		}
		for id, n := range seen {
			if n != 1 {
				t.Fatalf("block %s loaded by %d shards", id, n)
			}
		}
		if len(s0.gw.Store().Blocks()) == 0 || len(s1.gw.Store().Blocks()) == 0 {
			t.Logf("warning: one shard is empty (%d/%d)", len(s0.gw.Store().Blocks()), len(s1.gw.Store().Blocks()))
		}
		q := testserver.StartThanosQuerier(t, []string{s0.grpcAddr, s1.grpcAddr})
		diffAnswers(t, answers(t, q.API(t), tb.base, false), want2)
	})

	t.Run("restart reuses and repairs index-headers", func(t *testing.T) {
		dir := t.TempDir()
		withDir := func(c *storegw.Config) { c.DataDir = dir }
		first := startAgent(t, tb, withDir)
		if n := first.metric(t, "thanos_bucket_store_indexheader_download_duration_seconds", nil); n != float64(len(tb.loaded)) {
			t.Fatalf("first start built %v index-headers, want %d", n, len(tb.loaded))
		}
		first.stop(t)

		second := startAgent(t, tb, withDir)
		if n := second.metric(t, "thanos_bucket_store_indexheader_download_duration_seconds", nil); n != 0 {
			t.Fatalf("restart built %v index-headers, want 0", n)
		}
		second.stop(t)

		victim := filepath.Join(dir, tb.loaded[0].String(), indexheader.Filename)
		b, err := os.ReadFile(victim)
		if err != nil {
			t.Fatal(err)
		}
		b[len(b)/2] ^= 0xff
		if err := os.WriteFile(victim, b, 0o644); err != nil {
			t.Fatal(err)
		}
		third := startAgent(t, tb, withDir)
		if n := third.metric(t, "thanos_bucket_store_indexheader_download_duration_seconds", nil); n != 1 {
			t.Fatalf("after corruption built %v index-headers, want 1", n)
		}
		if n := len(third.gw.Store().Blocks()); n != len(tb.loaded) {
			t.Fatalf("%d blocks loaded after repair", n)
		}
		q := testserver.StartThanosQuerier(t, []string{third.grpcAddr})
		short := answers(t, qThanos.API(t), tb.base, true)
		diffAnswers(t, answers(t, q.API(t), tb.base, true), short)
	})

	for _, tc := range []struct {
		name string
		typ  func(t *testing.T) (string, any)
	}{
		{"in-memory caches", func(*testing.T) (string, any) {
			return cache.TypeInMemory, map[string]any{"max_size": "256MB", "max_item_size": "16MB"}
		}},
		{"memcached caches", func(t *testing.T) (string, any) {
			mc := testserver.StartMemcached(t)
			return cache.TypeMemcached, map[string]any{"addresses": []string{mc.Addr}, "max_item_size": "16MB"}
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			typ, backend := tc.typ(t)
			a := startAgent(t, tb, func(c *storegw.Config) {
				c.IndexCache = &cache.IndexCacheConfig{Type: typ, Config: backend, TTL: time.Hour}
				bc, err := cache.ParseBucketCacheConfig([]byte("type: " + typ))
				if err != nil {
					t.Fatal(err)
				}
				bc.Config = backend
				c.CachingBucket = bc
				// The disk chunk cache would answer the repeated chunk reads
				// before the caching bucket sees them.
				c.ChunkDiskCacheSize = 0
			})
			q := testserver.StartThanosQuerier(t, []string{a.grpcAddr})
			short := answers(t, qThanos.API(t), tb.base, true)
			first := answers(t, q.API(t), tb.base, true)
			diffAnswers(t, first, short)
			// memcached stores asynchronously.
			time.Sleep(500 * time.Millisecond)
			idx0 := a.metric(t, "thanos_store_index_cache_hits_total", nil)
			bkt0 := a.metric(t, "thanos_store_bucket_cache_operation_hits_total", map[string]string{"operation": "getrange"})
			diffAnswers(t, answers(t, q.API(t), tb.base, true), short)
			idx1 := a.metric(t, "thanos_store_index_cache_hits_total", nil)
			bkt1 := a.metric(t, "thanos_store_bucket_cache_operation_hits_total", map[string]string{"operation": "getrange"})
			t.Logf("index cache hits %v -> %v, chunk sub-range hits %v -> %v", idx0, idx1, bkt0, bkt1)
			if idx1 <= idx0 || bkt1 <= bkt0 {
				t.Fatalf("repeated queries did not hit the caches: index %v -> %v, chunks %v -> %v", idx0, idx1, bkt0, bkt1)
			}
		})
	}
}
