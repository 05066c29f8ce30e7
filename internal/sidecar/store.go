package sidecar

import (
	"context"
	"errors"
	"io"
	"slices"
	"sort"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/prompb"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/stevedore-dev/stevedore/internal/promclient"
	"github.com/stevedore-dev/stevedore/internal/storepb"
)

// Store serves the data of one Prometheus over the Thanos StoreAPI: Series
// through remote read, label names and values through the HTTP API, with the
// external labels added to everything it returns.
type Store struct {
	storepb.UnimplementedStoreServer

	client     *promclient.Client
	labels     func() labels.Labels
	timestamps func() (mint, maxt int64)
	frames     prometheus.Histogram
}

// NewStore returns a StoreAPI server for the Prometheus behind client.
// labels returns the current external labels, timestamps the time range the
// sidecar serves.
func NewStore(reg prometheus.Registerer, client *promclient.Client, lset func() labels.Labels, timestamps func() (int64, int64)) *Store {
	s := &Store{
		client:     client,
		labels:     lset,
		timestamps: timestamps,
		frames: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "prometheus_store_received_frames",
			Help:    "Number of frames received per streamed response.",
			Buckets: prometheus.ExponentialBuckets(10, 10, 5),
		}),
	}
	if reg != nil {
		reg.MustRegister(s.frames)
	}
	return s
}

// withoutLabels returns lset without the named labels.
func withoutLabels(lset labels.Labels, names []string) labels.Labels {
	if len(names) == 0 {
		return lset
	}
	b := labels.NewBuilder(lset)
	b.Del(names...)
	return b.Labels()
}

// Series streams the series matching r from Prometheus remote read.
func (s *Store) Series(r *storepb.SeriesRequest, srv grpc.ServerStreamingServer[storepb.SeriesResponse]) error {
	ctx := srv.Context()
	ext := s.labels()
	matchers, err := storepb.MatchersFromProto(r.GetMatchers())
	if err != nil {
		return err
	}
	ok, rest := storepb.MatchExternalLabels(matchers, ext)
	if !ok {
		// The matchers exclude this Prometheus: answer without asking it.
		return nil
	}
	if len(rest) == 0 {
		return status.Error(codes.InvalidArgument, "no matchers specified (excluding external labels)")
	}
	mint, maxt := s.timestamps()
	minTime, maxTime := max(r.GetMinTime(), mint), min(r.GetMaxTime(), maxt)
	if minTime > maxTime {
		return nil
	}
	finalExt := withoutLabels(ext, r.GetWithoutReplicaLabels())
	send := newSender(srv, int(r.GetResponseBatchSize()), r.GetLimit())
	send.shard = storepb.NewShardMatcher(r.GetShardInfo())
	if r.GetSkipChunks() {
		err = s.seriesLabelsOnly(ctx, rest, minTime, maxTime, finalExt, r.GetWithoutReplicaLabels(), send)
	} else {
		err = s.seriesRemoteRead(ctx, r, rest, minTime, maxTime, ext, finalExt, send)
	}
	if err != nil && !errors.Is(err, errLimitReached) {
		return err
	}
	return send.flush()
}

// seriesLabelsOnly answers skip_chunks requests from /api/v1/series, which
// is much cheaper than reading chunks that would be thrown away.
func (s *Store) seriesLabelsOnly(ctx context.Context, ms []*labels.Matcher, minTime, maxTime int64, ext labels.Labels, drop []string, send *sender) error {
	sets, err := s.client.Series(ctx, ms, minTime, maxTime)
	if err != nil {
		return err
	}
	out := make([]labels.Labels, 0, len(sets))
	for _, m := range sets {
		lset := withoutLabels(labels.FromMap(m), drop)
		out = append(out, storepb.WithExternalLabels(lset, ext))
	}
	slices.SortFunc(out, labels.Compare)
	for i, lset := range out {
		if i > 0 && labels.Equal(lset, out[i-1]) {
			continue
		}
		if err := send.series(&storepb.Series{Labels: storepb.LabelsToProto(lset)}); err != nil {
			return err
		}
	}
	return nil
}

func (s *Store) seriesRemoteRead(ctx context.Context, r *storepb.SeriesRequest, ms []*labels.Matcher, minTime, maxTime int64, ext, finalExt labels.Labels, send *sender) error {
	q := &prompb.Query{StartTimestampMs: minTime, EndTimestampMs: maxTime}
	for _, m := range ms {
		pm := prompb.LabelMatcher{Name: m.Name, Value: m.Value}
		switch m.Type {
		case labels.MatchEqual:
			pm.Type = prompb.LabelMatcher_EQ
		case labels.MatchNotEqual:
			pm.Type = prompb.LabelMatcher_NEQ
		case labels.MatchRegexp:
			pm.Type = prompb.LabelMatcher_RE
		case labels.MatchNotRegexp:
			pm.Type = prompb.LabelMatcher_NRE
		}
		q.Matchers = append(q.Matchers, &pm)
	}
	if h := r.GetQueryHints(); h != nil && h.GetStepMillis() != 0 {
		q.Hints = &prompb.ReadHints{
			StartMs:  minTime,
			EndMs:    maxTime,
			StepMs:   h.GetStepMillis(),
			Func:     h.GetFunc().GetName(),
			Grouping: h.GetGrouping().GetLabels(),
			By:       h.GetGrouping().GetBy(),
			RangeMs:  h.GetRange().GetMillis(),
		}
	}
	stream, err := s.client.RemoteRead(ctx, q)
	if err != nil {
		return err
	}
	defer func() { _ = stream.Close() }()

	drop := r.GetWithoutReplicaLabels()
	// Replica labels that are not external labels are real series labels:
	// removing them reorders series arbitrarily, so sort the whole answer.
	sortAll := false
	for _, n := range drop {
		if !ext.Has(n) {
			sortAll = true
		}
	}
	o := newOrderer(send.series, sortAll)
	for {
		cs, err := stream.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return err
		}
		orig := stripExternal(cs.Labels, ext)
		final := storepb.WithExternalLabels(withoutLabels(orig, drop), finalExt)
		out := &storepb.Series{Labels: storepb.LabelsToProto(final)}
		if !r.GetSkipChunks() {
			out.Chunks = make([]*storepb.AggrChunk, 0, len(cs.Chunks))
			for _, c := range cs.Chunks {
				enc, err := chunkEncoding(c.Type)
				if err != nil {
					return err
				}
				out.Chunks = append(out.Chunks, &storepb.AggrChunk{
					MinTime: c.MinTimeMs,
					MaxTime: c.MaxTimeMs,
					Raw:     &storepb.Chunk{Type: enc, Data: c.Data},
				})
			}
		}
		if err := o.add(orig, final, out); err != nil {
			return err
		}
	}
	if stream.Streamed() {
		s.frames.Observe(float64(stream.Frames))
	}
	return o.flush()
}

// stripExternal returns the series labels of a remote-read answer without
// the external labels Prometheus added to them: the answer is sorted by the
// labels without them.
func stripExternal(ls []prompb.Label, ext labels.Labels) labels.Labels {
	b := labels.NewScratchBuilder(len(ls))
	for _, l := range ls {
		if v := ext.Get(l.Name); v != "" && v == l.Value {
			continue
		}
		b.Add(l.Name, l.Value)
	}
	b.Sort()
	return b.Labels()
}

// chunkEncoding maps remote-read chunk encodings to StoreAPI ones (the enums
// are offset by one: remote read has UNKNOWN=0).
func chunkEncoding(e prompb.Chunk_Encoding) (storepb.Chunk_Encoding, error) {
	switch e {
	case prompb.Chunk_XOR:
		return storepb.Chunk_XOR, nil
	case prompb.Chunk_HISTOGRAM:
		return storepb.Chunk_HISTOGRAM, nil
	case prompb.Chunk_FLOAT_HISTOGRAM:
		return storepb.Chunk_FLOAT_HISTOGRAM, nil
	}
	return 0, status.Errorf(codes.Unimplemented, "chunk encoding %s has no StoreAPI equivalent", e)
}

// orderer restores label order after the external labels are added.
//
// Prometheus returns series sorted by their own labels. Adding the same
// external labels to every series keeps that order except in one case: when
// a series' labels are a strict prefix of the next ones' (every such series
// follows it directly). So only a run of series that all extend the first
// one is held back and sorted; everything else streams through.
type orderer struct {
	emit    func(*storepb.Series) error
	sortAll bool
	head    labels.Labels
	run     []*storepb.Series
}

func newOrderer(emit func(*storepb.Series) error, sortAll bool) *orderer {
	return &orderer{emit: emit, sortAll: sortAll}
}

func (o *orderer) add(orig, _ labels.Labels, s *storepb.Series) error {
	if o.sortAll || (len(o.run) > 0 && isPrefix(o.head, orig)) {
		o.run = append(o.run, s)
		return nil
	}
	if err := o.flush(); err != nil {
		return err
	}
	o.head = orig
	o.run = append(o.run, s)
	return nil
}

func (o *orderer) flush() error {
	if len(o.run) > 1 {
		sort.SliceStable(o.run, func(i, j int) bool {
			return storepb.CompareLabels(o.run[i].GetLabels(), o.run[j].GetLabels()) < 0
		})
	}
	for i, s := range o.run {
		if err := o.emit(s); err != nil {
			return err
		}
		o.run[i] = nil
	}
	o.run = o.run[:0]
	return nil
}

// isPrefix reports whether a's labels are the first labels of b.
func isPrefix(a, b labels.Labels) bool {
	if a.Len() >= b.Len() {
		return false
	}
	i, ok := 0, true
	bl := make([]labels.Label, 0, a.Len())
	b.Range(func(l labels.Label) {
		if i < a.Len() {
			bl = append(bl, l)
		}
		i++
	})
	j := 0
	a.Range(func(l labels.Label) {
		if ok && (bl[j] != l) {
			ok = false
		}
		j++
	})
	return ok
}

var errLimitReached = errors.New("series limit reached")

// sender sends series one by one or, when the client asked for it, in
// batches, and enforces the request's series limit.
type sender struct {
	srv   grpc.ServerStreamingServer[storepb.SeriesResponse]
	batch []*storepb.Series
	size  int
	limit int64
	sent  int64
	shard *storepb.ShardMatcher // nil unless the query is sharded
}

func newSender(srv grpc.ServerStreamingServer[storepb.SeriesResponse], batchSize int, limit int64) *sender {
	return &sender{srv: srv, size: batchSize, limit: limit}
}

func (s *sender) series(x *storepb.Series) error {
	if s.shard != nil && !s.shard.Matches(storepb.LabelsFromProto(x.GetLabels())) {
		return nil // Another shard of a vertically sharded query.
	}
	if s.limit > 0 && s.sent >= s.limit {
		return errLimitReached
	}
	s.sent++
	if s.size <= 1 {
		return s.srv.Send(storepb.NewSeriesResponse(x))
	}
	s.batch = append(s.batch, x)
	if len(s.batch) >= s.size {
		return s.flush()
	}
	return nil
}

func (s *sender) flush() error {
	if len(s.batch) == 0 {
		return nil
	}
	err := s.srv.Send(&storepb.SeriesResponse{Result: &storepb.SeriesResponse_Batch{Batch: &storepb.SeriesBatch{Series: s.batch}}})
	s.batch = nil
	return err
}

// LabelNames returns the label names of Prometheus plus the external ones.
func (s *Store) LabelNames(ctx context.Context, r *storepb.LabelNamesRequest) (*storepb.LabelNamesResponse, error) {
	q, ok, err := s.labelQuery(r.GetMatchers(), r.GetStart(), r.GetEnd())
	if err != nil {
		return nil, err
	}
	if !ok {
		return &storepb.LabelNamesResponse{}, nil
	}
	names, err := s.client.LabelNames(ctx, q.rest, q.start, q.end)
	if err != nil {
		return nil, err
	}
	if len(names) > 0 {
		withoutLabels(q.ext, r.GetWithoutReplicaLabels()).Range(func(l labels.Label) { names = append(names, l.Name) })
	}
	drop := r.GetWithoutReplicaLabels()
	names = slices.DeleteFunc(names, func(n string) bool { return slices.Contains(drop, n) })
	slices.Sort(names)
	names = slices.Compact(names)
	if l := r.GetLimit(); l > 0 && int64(len(names)) > l {
		names = names[:l]
	}
	return &storepb.LabelNamesResponse{Names: names}, nil
}

// LabelValues returns the values of one label; with matchers it asks for the
// matching series, as the values endpoint of older Prometheus ignores them.
func (s *Store) LabelValues(ctx context.Context, r *storepb.LabelValuesRequest) (*storepb.LabelValuesResponse, error) {
	name := r.GetLabel()
	if name == "" {
		return nil, status.Error(codes.InvalidArgument, "label name parameter cannot be empty")
	}
	if slices.Contains(r.GetWithoutReplicaLabels(), name) {
		return &storepb.LabelValuesResponse{}, nil
	}
	q, ok, err := s.labelQuery(r.GetMatchers(), r.GetStart(), r.GetEnd())
	if err != nil {
		return nil, err
	}
	if !ok {
		return &storepb.LabelValuesResponse{}, nil
	}
	if v := q.ext.Get(name); v != "" {
		return &storepb.LabelValuesResponse{Values: []string{v}}, nil
	}
	var values []string
	if len(q.rest) == 0 {
		if values, err = s.client.LabelValues(ctx, name, q.start, q.end); err != nil {
			return nil, err
		}
	} else {
		sets, err := s.client.Series(ctx, q.rest, q.start, q.end)
		if err != nil {
			return nil, err
		}
		for _, set := range sets {
			if v, ok := set[name]; ok && v != "" {
				values = append(values, v)
			}
		}
		slices.Sort(values)
		values = slices.Compact(values)
	}
	if l := r.GetLimit(); l > 0 && int64(len(values)) > l {
		values = values[:l]
	}
	return &storepb.LabelValuesResponse{Values: values}, nil
}

// labelQuery is what LabelNames and LabelValues need from a request.
type labelQuery struct {
	ext        labels.Labels
	rest       []*labels.Matcher // matchers left for Prometheus after the external labels
	start, end int64             // clamped to what this sidecar serves
}

// labelQuery resolves a label request's matchers and range; ok is false when
// nothing this sidecar holds can match, so the answer is empty without asking
// Prometheus.
func (s *Store) labelQuery(ms []*storepb.LabelMatcher, start, end int64) (labelQuery, bool, error) {
	q := labelQuery{ext: s.labels()}
	matchers, err := storepb.MatchersFromProto(ms)
	if err != nil {
		return q, false, err
	}
	ok, rest := storepb.MatchExternalLabels(matchers, q.ext)
	if !ok {
		return q, false, nil
	}
	q.rest = rest
	q.start, q.end = s.clampRange(start, end)
	return q, q.start <= q.end, nil
}

func (s *Store) clampRange(start, end int64) (int64, int64) {
	mint, maxt := s.timestamps()
	if end == 0 {
		// Older queriers leave the range unset for "everything".
		end = maxt
	}
	return max(start, mint), min(end, maxt)
}
