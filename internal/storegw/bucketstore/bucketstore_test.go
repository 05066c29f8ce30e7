package bucketstore

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/go-logr/logr"
	"github.com/oklog/ulid/v2"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/tsdb"
	"github.com/prometheus/prometheus/tsdb/chunkenc"
	"github.com/thanos-io/objstore/providers/filesystem"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"

	"github.com/stevedore-dev/stevedore/internal/block"
	"github.com/stevedore-dev/stevedore/internal/storegw/cache"
	"github.com/stevedore-dev/stevedore/internal/storegw/fetcher"
	"github.com/stevedore-dev/stevedore/internal/storepb"
	"github.com/stevedore-dev/stevedore/internal/testutil/blockgen"
)

type testBlock struct {
	dir string
	id  ulid.ULID
	ext labels.Labels
}

type fixture struct {
	blocks []testBlock
	store  *Store
	client storepb.StoreClient
	reg    *prometheus.Registry
}

const hour = int64(time.Hour / time.Millisecond)

// newFixture writes overlapping and adjacent blocks with two external label
// sets into a filesystem bucket and serves them over a real gRPC server.
func newFixture(t *testing.T, limits Limits, withCache bool, mutate ...func(*Options)) *fixture {
	t.Helper()
	return newFixtureOf(t, defaultSpecs, limits, withCache, mutate...)
}

type fixtureSpec struct {
	ext  map[string]string
	spec blockgen.Spec
}

var defaultSpecs = []fixtureSpec{
	{map[string]string{"cluster": "a"}, blockgen.Spec{MinTime: 0, MaxTime: 2 * hour, Series: 150, Metrics: []string{"up", "req_total"}, HistogramSeries: 10, Seed: 1}},
	{map[string]string{"cluster": "a"}, blockgen.Spec{MinTime: 2 * hour, MaxTime: 4 * hour, Series: 150, Metrics: []string{"up", "req_total"}, HistogramSeries: 10, Seed: 2}},
	{map[string]string{"cluster": "a"}, blockgen.Spec{MinTime: 3 * hour, MaxTime: 5 * hour, Series: 50, Metrics: []string{"up"}, Seed: 3, Step: 30_000}},
	{map[string]string{"cluster": "b", "replica": "0"}, blockgen.Spec{MinTime: hour, MaxTime: 3 * hour, Series: 120, Metrics: []string{"up", "other"}, HistogramSeries: 5, Seed: 4}},
}

// newFixtureOf writes blocks of specs into a filesystem bucket and serves
// them over a real gRPC server.
func newFixtureOf(t *testing.T, specs []fixtureSpec, limits Limits, withCache bool, mutate ...func(*Options)) *fixture {
	t.Helper()
	ctx := context.Background()
	bdir, local := t.TempDir(), t.TempDir()
	bkt, err := filesystem.NewBucket(bdir)
	if err != nil {
		t.Fatal(err)
	}
	f := &fixture{}
	for _, s := range specs {
		id, err := blockgen.Write(ctx, local, s.spec)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := blockgen.SetThanosMeta(local, id, s.ext, block.SourceTest); err != nil {
			t.Fatal(err)
		}
		if err := blockgen.Upload(ctx, bkt, local, id); err != nil {
			t.Fatal(err)
		}
		f.blocks = append(f.blocks, testBlock{dir: filepath.Join(local, id.String()), id: id, ext: labels.FromMap(s.ext)})
	}
	f.reg = prometheus.NewRegistry()
	mf, err := fetcher.New(logr.Discard(), bkt, 4, filepath.Join(t.TempDir(), "meta"), f.reg)
	if err != nil {
		t.Fatal(err)
	}
	opts := Options{Logger: logr.Discard(), Registry: f.reg, Dir: t.TempDir(), BlockSyncConcurrency: 2, PostingOffsetsInMemSampling: 4, Limits: limits}
	for _, fn := range mutate {
		fn(&opts)
	}
	if withCache {
		opts.IndexCache = cache.NewIndexCache(cache.NewInMemory("index", 64<<20, 32<<20, f.reg), 0, nil, f.reg)
	}
	f.store, err = New(bkt, mf, opts)
	if err != nil {
		t.Fatal(err)
	}
	if err := f.store.InitialSync(ctx); err != nil {
		t.Fatal(err)
	}
	if n := f.store.Status().BlocksLoaded; n != len(specs) {
		t.Fatalf("%d blocks loaded, want %d", n, len(specs))
	}
	t.Cleanup(func() { _ = f.store.Close() })

	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := grpc.NewServer(storepb.ServerCodec())
	storepb.RegisterStoreServer(srv, testServer{s: f.store})
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(srv.Stop)
	conn, err := grpc.NewClient(ln.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	f.client = storepb.NewStoreClient(conn)
	return f
}

type testServer struct {
	storepb.UnimplementedStoreServer
	s *Store
}

func (t testServer) Series(r *storepb.SeriesRequest, srv storepb.Store_SeriesServer) error {
	return t.s.Series(r, srv)
}
func (t testServer) LabelNames(ctx context.Context, r *storepb.LabelNamesRequest) (*storepb.LabelNamesResponse, error) {
	return t.s.LabelNames(ctx, r)
}
func (t testServer) LabelValues(ctx context.Context, r *storepb.LabelValuesRequest) (*storepb.LabelValuesResponse, error) {
	return t.s.LabelValues(ctx, r)
}

// series maps labels to the sorted samples ("t=v") of a series.
type series map[string][]string

// expected reads the blocks with Prometheus's own querier.
func (f *fixture) expected(t *testing.T, mint, maxt int64, ms ...*labels.Matcher) series {
	t.Helper()
	out := series{}
	for _, tb := range f.blocks {
		// Matchers on external labels select or skip the whole block.
		var rest []*labels.Matcher
		skip := false
		for _, m := range ms {
			if v := tb.ext.Get(m.Name); v != "" {
				if !m.Matches(v) {
					skip = true
				}
				continue
			}
			rest = append(rest, m)
		}
		if skip || len(rest) == 0 {
			continue
		}
		b, err := tsdb.OpenBlock(nil, tb.dir, nil, nil)
		if err != nil {
			t.Fatal(err)
		}
		q, err := tsdb.NewBlockQuerier(b, mint, maxt)
		if err != nil {
			t.Fatal(err)
		}
		ss := q.Select(context.Background(), true, nil, rest...)
		for ss.Next() {
			s := ss.At()
			lb := labels.NewBuilder(s.Labels())
			tb.ext.Range(func(l labels.Label) { lb.Set(l.Name, l.Value) })
			key := lb.Labels().String()
			samples := readSamples(s.Iterator(nil), mint, maxt)
			if len(samples) > 0 {
				out[key] = append(out[key], samples...)
			}
		}
		if err := ss.Err(); err != nil {
			t.Fatal(err)
		}
		_ = q.Close()
		_ = b.Close()
	}
	for k := range out {
		slices.Sort(out[k])
	}
	return out
}

func readSamples(it chunkenc.Iterator, mint, maxt int64) []string {
	var out []string
	for vt := it.Next(); vt != chunkenc.ValNone; vt = it.Next() {
		var ts int64
		var s string
		switch vt {
		case chunkenc.ValFloat:
			t, v := it.At()
			ts, s = t, fmt.Sprint(v)
		case chunkenc.ValHistogram:
			t, h := it.AtHistogram(nil)
			ts, s = t, h.String()
		case chunkenc.ValFloatHistogram:
			t, h := it.AtFloatHistogram(nil)
			ts, s = t, h.String()
		}
		if ts >= mint && ts <= maxt {
			out = append(out, fmt.Sprintf("%d=%s", ts, s))
		}
	}
	return out
}

// got runs a Series call and decodes the returned chunks; order lists the
// series' labels as they came.
func (f *fixture) got(t *testing.T, req *storepb.SeriesRequest) (series, []labels.Labels, error) {
	t.Helper()
	stream, err := f.client.Series(context.Background(), req)
	if err != nil {
		return nil, nil, err
	}
	out := series{}
	var order []labels.Labels
	for {
		resp, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return nil, nil, err
		}
		list := []*storepb.Series{resp.GetSeries()}
		if b := resp.GetBatch(); b != nil {
			list = b.GetSeries()
		}
		for _, s := range list {
			if s == nil {
				continue
			}
			lset := storepb.LabelsFromProto(s.GetLabels())
			key := lset.String()
			order = append(order, lset)
			for _, c := range s.GetChunks() {
				enc := chunkenc.EncXOR
				switch c.GetRaw().GetType() {
				case storepb.Chunk_HISTOGRAM:
					enc = chunkenc.EncHistogram
				case storepb.Chunk_FLOAT_HISTOGRAM:
					enc = chunkenc.EncFloatHistogram
				}
				ch, err := chunkenc.FromData(enc, c.GetRaw().GetData())
				if err != nil {
					t.Fatal(err)
				}
				out[key] = append(out[key], readSamples(ch.Iterator(nil), req.MinTime, req.MaxTime)...)
			}
			if _, ok := out[key]; !ok && req.SkipChunks {
				out[key] = nil
			}
		}
	}
	for k := range out {
		slices.Sort(out[k])
	}
	return out, order, nil
}

// checkOrder fails unless the series came sorted by labels, each once.
func checkOrder(t *testing.T, order []labels.Labels) {
	t.Helper()
	for i := 1; i < len(order); i++ {
		if labels.Compare(order[i-1], order[i]) >= 0 {
			t.Fatalf("series %s after %s: not in label order", order[i], order[i-1])
		}
	}
}

func m(t labels.MatchType, n, v string) *labels.Matcher { return labels.MustNewMatcher(t, n, v) }

func TestSeriesMatchesPrometheus(t *testing.T) {
	f := newFixture(t, Limits{}, true)
	for _, tc := range []struct {
		name       string
		mint, maxt int64
		ms         []*labels.Matcher
	}{
		{"eq", 0, 5 * hour, []*labels.Matcher{m(labels.MatchEqual, "__name__", "up")}},
		{"eq and neq", 0, 5 * hour, []*labels.Matcher{m(labels.MatchEqual, "__name__", "up"), m(labels.MatchNotEqual, "zone", "a")}},
		{"regex alternation", hour, 3 * hour, []*labels.Matcher{m(labels.MatchRegexp, "__name__", "up|req_total"), m(labels.MatchRegexp, "job", "job-1|job-3")}},
		{"regex", 0, 5 * hour, []*labels.Matcher{m(labels.MatchRegexp, "instance", "instance-00[1-3].*")}},
		{"not regex", 0, 5 * hour, []*labels.Matcher{m(labels.MatchEqual, "__name__", "req_total"), m(labels.MatchNotRegexp, "instance", "instance-00.*")}},
		{"empty matcher selects missing label", 0, 5 * hour, []*labels.Matcher{m(labels.MatchEqual, "__name__", "up"), m(labels.MatchEqual, "nolabel", "")}},
		{"neq empty", 0, 5 * hour, []*labels.Matcher{m(labels.MatchRegexp, "__name__", ".+"), m(labels.MatchNotEqual, "zone", "")}},
		{"all", 0, 5 * hour, []*labels.Matcher{m(labels.MatchRegexp, "__name__", ".+")}},
		{"histograms", 0, 5 * hour, []*labels.Matcher{m(labels.MatchEqual, "__name__", "test_histogram")}},
		{"external label", 0, 5 * hour, []*labels.Matcher{m(labels.MatchEqual, "cluster", "b"), m(labels.MatchEqual, "__name__", "up")}},
		{"external label regex", 0, 5 * hour, []*labels.Matcher{m(labels.MatchRegexp, "cluster", "a|c"), m(labels.MatchEqual, "job", "job-2")}},
		{"across block boundary", 2*hour - 60_000, 2*hour + 60_000, []*labels.Matcher{m(labels.MatchEqual, "__name__", "up")}},
		{"nothing", 0, 5 * hour, []*labels.Matcher{m(labels.MatchEqual, "__name__", "nope")}},
		{"out of range", 10 * hour, 11 * hour, []*labels.Matcher{m(labels.MatchEqual, "__name__", "up")}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			want := f.expected(t, tc.mint, tc.maxt, tc.ms...)
			for _, batch := range []int64{0, 7} {
				req := &storepb.SeriesRequest{MinTime: tc.mint, MaxTime: tc.maxt, Matchers: storepb.MatchersToProto(tc.ms), ResponseBatchSize: batch}
				got, order, err := f.got(t, req)
				if err != nil {
					t.Fatal(err)
				}
				checkOrder(t, order)
				compare(t, got, want)
			}
			// skip_chunks returns the same series, without chunks.
			got, _, err := f.got(t, &storepb.SeriesRequest{MinTime: tc.mint, MaxTime: tc.maxt, Matchers: storepb.MatchersToProto(tc.ms), SkipChunks: true})
			if err != nil {
				t.Fatal(err)
			}
			if len(got) != len(want) {
				t.Fatalf("skip_chunks: %d series, want %d", len(got), len(want))
			}
			for k := range want {
				if _, ok := got[k]; !ok {
					t.Fatalf("skip_chunks: missing %s", k)
				}
			}
		})
	}
}

// TestUnderestimatedSizes makes every series entry and chunk longer than the
// size estimates, so that each is read again on its own.
// TestExternalLabelOrder serves blocks where an external label sorts after
// a label that only some series have: a series that is a prefix of another
// then moves after it, and the block's series must be sorted again.
func TestExternalLabelOrder(t *testing.T) {
	custom := []labels.Labels{
		labels.FromStrings("__name__", "m"),
		labels.FromStrings("__name__", "m", "instance", "i1"),
		labels.FromStrings("__name__", "m", "instance", "i2", "pod", "p"),
		labels.FromStrings("__name__", "m", "pod", "p"),
		labels.FromStrings("__name__", "m", "zone", "z"),
		labels.FromStrings("__name__", "n"),
		labels.FromStrings("__name__", "n", "instance", "i1"),
	}
	specs := []fixtureSpec{
		{map[string]string{"replica": "0"}, blockgen.Spec{MinTime: 0, MaxTime: 2 * hour, Custom: custom, Seed: 1}},
		{map[string]string{"replica": "0"}, blockgen.Spec{MinTime: 2 * hour, MaxTime: 4 * hour, Custom: custom, Seed: 2}},
		{map[string]string{"replica": "1"}, blockgen.Spec{MinTime: hour, MaxTime: 3 * hour, Custom: custom[1:], Seed: 3}},
		{map[string]string{"cluster": "x"}, blockgen.Spec{MinTime: 0, MaxTime: 2 * hour, Custom: custom, Seed: 4}},
	}
	f := newFixtureOf(t, specs, Limits{}, true)
	ms := []*labels.Matcher{m(labels.MatchRegexp, "__name__", "m|n")}
	want := f.expected(t, 0, 4*hour, ms...)
	for _, batch := range []int64{0, 3} {
		for range 2 { // Cold and from the index cache.
			got, order, err := f.got(t, &storepb.SeriesRequest{MinTime: 0, MaxTime: 4 * hour, Matchers: storepb.MatchersToProto(ms), ResponseBatchSize: batch})
			if err != nil {
				t.Fatal(err)
			}
			checkOrder(t, order)
			if len(order) != len(want) {
				t.Fatalf("%d series, want %d", len(order), len(want))
			}
			compare(t, got, want)
		}
	}
}

func TestUnderestimatedSizes(t *testing.T) {
	f := newFixture(t, Limits{}, false)
	for _, b := range f.store.snapshot() {
		b.maxSeriesSize, b.maxChunkSize = 8, 8
	}
	for _, ms := range [][]*labels.Matcher{
		{m(labels.MatchRegexp, "__name__", ".+")},
		{m(labels.MatchRegexp, "instance", "instance-00[1-3].*"), m(labels.MatchEqual, "zone", "b")},
	} {
		want := f.expected(t, 0, 5*hour, ms...)
		got, _, err := f.got(t, &storepb.SeriesRequest{MinTime: 0, MaxTime: 5 * hour, Matchers: storepb.MatchersToProto(ms)})
		if err != nil {
			t.Fatal(err)
		}
		compare(t, got, want)
	}
}

func compare(t *testing.T, got, want series) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("%d series, want %d", len(got), len(want))
	}
	for k, w := range want {
		g, ok := got[k]
		if !ok {
			t.Fatalf("missing series %s", k)
		}
		if !slices.Equal(g, w) {
			t.Fatalf("series %s: %d samples, want %d (first got %v want %v)", k, len(g), len(w), first(g), first(w))
		}
	}
}

func first(s []string) string {
	if len(s) == 0 {
		return ""
	}
	return s[0]
}

func TestLabelNamesAndValues(t *testing.T) {
	f := newFixture(t, Limits{}, false)
	ctx := context.Background()
	names, err := f.client.LabelNames(ctx, &storepb.LabelNamesRequest{Start: 0, End: 5 * hour})
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"__name__", "cluster", "instance", "job", "replica", "zone"}
	if !slices.Equal(names.GetNames(), want) {
		t.Fatalf("names %v, want %v", names.GetNames(), want)
	}
	names, err = f.client.LabelNames(ctx, &storepb.LabelNamesRequest{Start: 0, End: 5 * hour,
		Matchers: storepb.MatchersToProto([]*labels.Matcher{m(labels.MatchEqual, "cluster", "a")})})
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{"__name__", "cluster", "instance", "job", "zone"}; !slices.Equal(names.GetNames(), want) {
		t.Fatalf("names with matcher %v, want %v", names.GetNames(), want)
	}
	for _, tc := range []struct {
		label string
		ms    []*labels.Matcher
		want  []string
	}{
		{"__name__", nil, []string{"other", "req_total", "test_histogram", "up"}},
		{"cluster", nil, []string{"a", "b"}},
		{"__name__", []*labels.Matcher{m(labels.MatchEqual, "cluster", "b")}, []string{"other", "test_histogram", "up"}},
		{"zone", []*labels.Matcher{m(labels.MatchEqual, "__name__", "up"), m(labels.MatchRegexp, "zone", "a|b")}, []string{"a", "b"}},
		{"replica", []*labels.Matcher{m(labels.MatchEqual, "__name__", "req_total")}, nil},
		{"job", []*labels.Matcher{m(labels.MatchEqual, "instance", "instance-0149")}, []string{"job-1"}},
	} {
		resp, err := f.client.LabelValues(ctx, &storepb.LabelValuesRequest{Label: tc.label, Start: 0, End: 5 * hour, Matchers: storepb.MatchersToProto(tc.ms)})
		if err != nil {
			t.Fatal(err)
		}
		if !slices.Equal(resp.GetValues(), tc.want) {
			t.Errorf("values of %s %v: %v, want %v", tc.label, tc.ms, resp.GetValues(), tc.want)
		}
	}
}

func TestLimits(t *testing.T) {
	for _, tc := range []struct {
		name    string
		limits  Limits
		wantErr string
	}{
		{"touched series", Limits{TouchedSeriesLimit: 100}, "touched-series-limit"},
		{"samples", Limits{SeriesSampleLimit: 1000}, "series-sample-limit"},
		{"under limits", Limits{TouchedSeriesLimit: 1e6, SeriesSampleLimit: 1e9, MaxConcurrency: 1}, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := newFixture(t, tc.limits, false)
			_, _, err := f.got(t, &storepb.SeriesRequest{MinTime: 0, MaxTime: 5 * hour,
				Matchers: storepb.MatchersToProto([]*labels.Matcher{m(labels.MatchEqual, "__name__", "up")})})
			if tc.wantErr == "" {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			if status.Code(err) != codes.ResourceExhausted || !strings.Contains(err.Error(), tc.wantErr) {
				t.Fatalf("error %v, want ResourceExhausted naming %s", err, tc.wantErr)
			}
		})
	}
}

func TestLazyIndexHeader(t *testing.T) {
	f := newFixture(t, Limits{}, false, func(o *Options) {
		o.LazyIndexHeader = true
		o.LazyIndexHeaderIdleTimeout = time.Nanosecond
	})
	ms := []*labels.Matcher{m(labels.MatchRegexp, "__name__", "up|test_histogram")}
	for range 2 { // Before and after the idle readers were closed.
		got, _, err := f.got(t, &storepb.SeriesRequest{MinTime: 0, MaxTime: 5 * hour, Matchers: storepb.MatchersToProto(ms)})
		if err != nil {
			t.Fatal(err)
		}
		compare(t, got, f.expected(t, 0, 5*hour, ms...))
		f.store.CloseIdleReaders()
	}
}

// TestBlocksFor checks block selection by resolution: the coarsest allowed,
// gaps filled with finer blocks, per external label set.
func TestBlocksFor(t *testing.T) {
	mk := func(name string, ext string, res, from, to int64) *bucketBlock {
		m := &block.Meta{}
		m.MinTime, m.MaxTime = from*hour, to*hour
		m.Thanos.Downsample.Resolution = res
		m.Thanos.Labels = map[string]string{"cluster": ext}
		m.ULID = ulid.MustNew(uint64(len(name)), nil)
		return &bucketBlock{meta: m, extLset: labels.FromMap(m.Thanos.Labels), dir: name}
	}
	bs := []*bucketBlock{
		mk("raw-a-0", "a", 0, 0, 24), mk("raw-a-1", "a", 0, 24, 48), mk("raw-a-2", "a", 0, 48, 50),
		mk("5m-a", "a", 300_000, 0, 48),
		mk("1h-a", "a", 3_600_000, 0, 24),
		mk("raw-b", "b", 0, 0, 48),
	}
	names := func(bs []*bucketBlock) []string {
		var out []string
		for _, b := range bs {
			out = append(out, b.dir)
		}
		slices.Sort(out)
		return out
	}
	for _, tc := range []struct {
		maxRes     int64
		mint, maxt int64
		want       []string
	}{
		{0, 0, 50 * hour, []string{"raw-a-0", "raw-a-1", "raw-a-2", "raw-b"}},
		{300_000, 0, 50 * hour, []string{"5m-a", "raw-a-2", "raw-b"}},
		{3_600_000, 0, 50 * hour, []string{"1h-a", "5m-a", "raw-a-2", "raw-b"}},
		{3_600_000, 30 * hour, 40 * hour, []string{"5m-a", "raw-b"}},
		{60_000, 10 * hour, 30 * hour, []string{"raw-a-0", "raw-a-1", "raw-b"}},
		{300_000, 60 * hour, 70 * hour, nil},
	} {
		if got := names(blocksFor(bs, tc.mint, tc.maxt, tc.maxRes)); !slices.Equal(got, tc.want) {
			t.Errorf("maxRes %d [%dh, %dh]: %v, want %v", tc.maxRes, tc.mint/hour, tc.maxt/hour, got, tc.want)
		}
	}
}
