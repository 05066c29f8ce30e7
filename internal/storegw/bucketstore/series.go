package bucketstore

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/tsdb/chunks"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/stevedore-dev/stevedore/internal/storegw/indexheader"
	"github.com/stevedore-dev/stevedore/internal/storepb"
)

const (
	// seriesBatch is how many series entries are read from the index at once.
	seriesBatch = 4096
	// chunkBatch bounds the chunks held in memory per block while streaming:
	// memory depends on this, not on the size of the answer.
	chunkBatch = 2048
)

// request is the per-call state shared by the blocks answering one request.
type request struct {
	mint, maxt  int64
	skipChunks  bool
	withoutExt  map[string]struct{}
	stats       *queryStats
	limits      Limits
	touched     atomic.Uint64
	samples     atomic.Uint64
	onLimitDrop func(reason string)
}

func (r *request) touch(n int) error {
	if l := r.limits.TouchedSeriesLimit; l > 0 {
		if t := r.touched.Add(uint64(n)); t > l {
			r.onLimitDrop("series")
			return status.Errorf(codes.ResourceExhausted, "exceeded series limit: the query touches more than %d series (--store.grpc.touched-series-limit)", l)
		}
	}
	return nil
}

func (r *request) addSamples(n int) error {
	if l := r.limits.SeriesSampleLimit; l > 0 {
		if t := r.samples.Add(uint64(n)); t > l {
			r.onLimitDrop("samples")
			return status.Errorf(codes.ResourceExhausted, "exceeded samples limit: the query returns more than %d samples (--store.grpc.series-sample-limit)", l)
		}
	}
	return nil
}

// entry is a selected series of a block: final labels and the chunks in range.
type entry struct {
	lset labels.Labels
	chks []chunkMeta
	// from and to locate chks in the block's slab of chunk metas while it grows.
	from, to int
}

// chunkMeta is where a chunk is and what it covers. Unlike chunks.Meta it
// holds no pointer, so the metas of large answers cost the GC nothing to scan.
type chunkMeta struct {
	ref              chunks.ChunkRef
	minTime, maxTime int64
}

// selectSeries returns the block's series matching ms with data in the
// request range, with external labels attached, sorted by labels.
func (b *bucketBlock) selectSeries(ctx context.Context, ms []*labels.Matcher, req *request) ([]entry, error) {
	ids, err := b.expandPostings(ctx, ms, req.stats)
	if err != nil {
		return nil, fmt.Errorf("expand postings of block %s: %w", b.id(), err)
	}
	if err := req.touch(len(ids)); err != nil {
		return nil, err
	}
	var (
		out    = make([]entry, 0, len(ids))
		sl     []symbolizedLabel
		metas  []chunkMeta // One slab for the chunks of all series.
		sb     labels.ScratchBuilder
		ext    = b.externalLabels(req.withoutExt)
		sorted = true
	)
	for start := 0; start < len(ids); start += seriesBatch {
		batch := ids[start:min(start+seriesBatch, len(ids))]
		raw, err := b.loadSeries(ctx, batch, req.stats)
		if err != nil {
			return nil, fmt.Errorf("load series of block %s: %w", b.id(), err)
		}
		req.stats.series.Add(int64(len(batch)))
		for _, id := range batch {
			if err := ctx.Err(); err != nil {
				return nil, err
			}
			data, ok := raw[id]
			if !ok {
				return nil, fmt.Errorf("block %s: series %d not loaded", b.id(), id)
			}
			from := len(metas)
			ok, err := decodeSeries(data, &sl, &metas, req.skipChunks, req.mint, req.maxt)
			if err != nil {
				return nil, fmt.Errorf("block %s series %d: %w", b.id(), id, err)
			}
			if !ok {
				metas = metas[:from]
				continue
			}
			lset, err := seriesLabels(ctx, b.ih, sl, ext, &sb)
			if err != nil {
				return nil, fmt.Errorf("block %s series %d: %w", b.id(), id, err)
			}
			e := entry{lset: lset, from: from, to: len(metas)}
			if n := len(out); n > 0 && sorted && labels.Compare(out[n-1].lset, lset) > 0 {
				sorted = false
			}
			out = append(out, e)
		}
	}
	for i := range out {
		out[i].chks = metas[out[i].from:out[i].to:out[i].to]
	}
	if !sorted {
		// Index order is label order, but an external label can land between
		// a series and a longer series sharing its prefix; restore the order.
		slices.SortFunc(out, func(a, b entry) int { return labels.Compare(a.lset, b.lset) })
	}
	return out, nil
}

// externalLabels returns the block's external labels minus the ones the
// querier asked to drop.
func (b *bucketBlock) externalLabels(without map[string]struct{}) []labels.Label {
	var out []labels.Label
	b.extLset.Range(func(l labels.Label) {
		if _, drop := without[l.Name]; !drop {
			out = append(out, l)
		}
	})
	return out
}

// seriesLabels resolves symbolized labels through the index-header and adds
// the external labels ext, which override series labels of the same name, as
// in Thanos. Both are sorted by name, so they are merged rather than sorted.
func seriesLabels(ctx context.Context, ih indexheader.Reader, sl []symbolizedLabel, ext []labels.Label, sb *labels.ScratchBuilder) (labels.Labels, error) {
	sb.Reset()
	for _, l := range sl {
		n, err := ih.LookupSymbol(ctx, l.name)
		if err != nil {
			return labels.EmptyLabels(), fmt.Errorf("lookup label name: %w", err)
		}
		for len(ext) > 0 && ext[0].Name < n {
			sb.Add(ext[0].Name, ext[0].Value)
			ext = ext[1:]
		}
		if len(ext) > 0 && ext[0].Name == n {
			continue // Added with the next series label or after the loop.
		}
		v, err := ih.LookupSymbol(ctx, l.value)
		if err != nil {
			return labels.EmptyLabels(), fmt.Errorf("lookup label value: %w", err)
		}
		sb.Add(n, v)
	}
	for _, e := range ext {
		sb.Add(e.Name, e.Value)
	}
	return sb.Labels(), nil
}

// streamBlock sends the block's series in batches to out, reading chunks
// batch by batch. It closes out when done.
func (b *bucketBlock) streamBlock(ctx context.Context, ms []*labels.Matcher, req *request, out chan<- seriesBatchOrErr) {
	defer close(out)
	send := func(v seriesBatchOrErr) bool {
		select {
		case out <- v:
			return true
		case <-ctx.Done():
			return false
		}
	}
	entries, err := b.selectSeries(ctx, ms, req)
	if err != nil {
		send(seriesBatchOrErr{err: err})
		return
	}
	for i := 0; i < len(entries); {
		j, nchks := i, 0
		for j < len(entries) && (j == i || nchks+len(entries[j].chks) <= chunkBatch) {
			nchks += len(entries[j].chks)
			j++
		}
		batch, loads := newBatch(entries[i:j], nchks, req.skipChunks)
		if len(loads) > 0 {
			if err := b.loadChunks(ctx, loads, req.stats); err != nil {
				send(seriesBatchOrErr{err: fmt.Errorf("load chunks of block %s: %w", b.id(), err)})
				return
			}
			n := 0
			for _, l := range loads {
				n += numSamples(l.dst.GetData())
			}
			req.stats.chunks.Add(int64(len(loads)))
			req.stats.samples.Add(int64(n))
			if err := req.addSamples(n); err != nil {
				send(seriesBatchOrErr{err: err})
				return
			}
		}
		// Let the entries of sent batches be collected early.
		clear(entries[i:j])
		if !send(seriesBatchOrErr{series: batch}) {
			return
		}
		i = j
	}
}

// newBatch builds the wire series of entries, with chunks to be filled in by
// loads. The messages of a batch are allocated in a few slabs rather than one
// by one: allocation and GC dominated the CPU profile of large answers, and a
// batch is sent and dropped as a whole anyway.
func newBatch(entries []entry, nchks int, skipChunks bool) ([]*storepb.Series, []chunkLoad) {
	nlbls := 0
	for _, e := range entries {
		nlbls += e.lset.Len()
	}
	var (
		series    = make([]storepb.Series, len(entries))
		out       = make([]*storepb.Series, len(entries))
		lbls      = make([]storepb.Label, nlbls)
		lblPtrs   = make([]*storepb.Label, nlbls)
		loads     []chunkLoad
		aggrs     []storepb.AggrChunk
		raws      []storepb.Chunk
		aggrPtrs  []*storepb.AggrChunk
		nextLabel int
	)
	if !skipChunks {
		loads = make([]chunkLoad, 0, nchks)
		aggrs = make([]storepb.AggrChunk, nchks)
		raws = make([]storepb.Chunk, nchks)
		aggrPtrs = make([]*storepb.AggrChunk, nchks)
	}
	for i, e := range entries {
		s := &series[i]
		first := nextLabel
		e.lset.Range(func(l labels.Label) {
			lbl := &lbls[nextLabel]
			lbl.Name, lbl.Value = l.Name, l.Value
			lblPtrs[nextLabel] = lbl
			nextLabel++
		})
		s.Labels = lblPtrs[first:nextLabel:nextLabel]
		if !skipChunks {
			k0 := len(loads)
			for k, c := range e.chks {
				ac := &aggrs[k0+k]
				ac.MinTime, ac.MaxTime, ac.Raw = c.minTime, c.maxTime, &raws[k0+k]
				aggrPtrs[k0+k] = ac
				loads = append(loads, chunkLoad{ref: c.ref, dst: ac.Raw})
			}
			s.Chunks = aggrPtrs[k0:len(loads):len(loads)]
		}
		out[i] = s
	}
	return out, loads
}

type seriesBatchOrErr struct {
	series []*storepb.Series
	err    error
}

// chanSeriesSet adapts a block's stream to storepb.SeriesSet.
type chanSeriesSet struct {
	ch  <-chan seriesBatchOrErr
	cur []*storepb.Series
	i   int
	err error
}

func (c *chanSeriesSet) Next() bool {
	c.i++
	for c.i >= len(c.cur) {
		v, ok := <-c.ch
		if !ok {
			return false
		}
		if v.err != nil {
			c.err = v.err
			return false
		}
		c.cur, c.i = v.series, 0
	}
	return true
}

func (c *chanSeriesSet) At() *storepb.Series { return c.cur[c.i] }
func (c *chanSeriesSet) Err() error          { return c.err }

// acquireBlocks returns the loaded blocks, each held until release is called
// so that a concurrent sync cannot unmap an index-header in use.
func (s *Store) acquireBlocks() (bs []*bucketBlock, release func()) {
	s.mu.RLock()
	for _, b := range s.blocks {
		b.pending.Add(1)
		bs = append(bs, b)
	}
	s.mu.RUnlock()
	return bs, func() {
		for _, b := range bs {
			b.pending.Done()
		}
	}
}

// blocksFor picks, per external label set, the blocks covering [mint, maxt]
// as Thanos does: raw blocks only (downsampled ones are not loaded).
func blocksFor(bs []*bucketBlock, mint, maxt int64) []*bucketBlock {
	if mint > maxt {
		return nil
	}
	var out []*bucketBlock
	for _, b := range bs {
		// Block ranges are half-open: [MinTime, MaxTime).
		if b.meta.MaxTime <= mint || b.meta.MinTime > maxt {
			continue
		}
		out = append(out, b)
	}
	return out
}

// matchersForBlock drops matchers satisfied by the block's external labels;
// ok is false when an external label contradicts a matcher.
func matchersForBlock(b *bucketBlock, ms []*labels.Matcher) ([]*labels.Matcher, bool) {
	out := make([]*labels.Matcher, 0, len(ms))
	for _, m := range ms {
		v := b.extLset.Get(m.Name)
		if v == "" {
			out = append(out, m)
			continue
		}
		if !m.Matches(v) {
			return nil, false
		}
	}
	return out, true
}

// Series implements storepb.StoreServer: it streams the series of all
// matching blocks, merged and sorted, with memory bounded per block by
// chunkBatch rather than by the size of the answer.
func (s *Store) Series(req *storepb.SeriesRequest, srv storepb.Store_SeriesServer) error {
	ctx := srv.Context()
	if s.gate != nil {
		start := time.Now()
		select {
		case s.gate <- struct{}{}:
		case <-ctx.Done():
			return status.FromContextError(ctx.Err()).Err()
		}
		s.metrics.gateWait.Observe(time.Since(start).Seconds())
		s.metrics.gateInFlight.Inc()
		defer func() { <-s.gate; s.metrics.gateInFlight.Dec() }()
	}
	start := time.Now()
	ms, err := storepb.MatchersFromProto(req.GetMatchers())
	if err != nil {
		return err
	}
	r := s.newRequest(req.GetMinTime(), req.GetMaxTime(), req.GetSkipChunks(), req.GetWithoutReplicaLabels())
	defer s.metrics.observe(r.stats)

	all, release := s.acquireBlocks()
	defer release()
	ctx, cancel := context.WithCancel(ctx)
	// Block readers must be done before the blocks are released: a sync may
	// close (unmap) a released block's index-header.
	var wg sync.WaitGroup
	defer wg.Wait()
	defer cancel()

	var sets []storepb.SeriesSet
	queried := 0
	for _, b := range blocksFor(all, r.mint, r.maxt) {
		bms, ok := matchersForBlock(b, ms)
		if !ok {
			continue
		}
		ch := make(chan seriesBatchOrErr, 1)
		wg.Go(func() { b.streamBlock(ctx, bms, r, ch) })
		sets = append(sets, &chanSeriesSet{ch: ch, i: -1})
		queried++
	}
	s.metrics.blocksQueried.Observe(float64(queried))

	set := storepb.MergeSeriesSets(sets...)
	batchSize := int(req.GetResponseBatchSize())
	var pending []*storepb.Series
	flush := func() error {
		if len(pending) == 0 {
			return nil
		}
		err := srv.Send(&storepb.SeriesResponse{Result: &storepb.SeriesResponse_Batch{Batch: &storepb.SeriesBatch{Series: pending}}})
		pending = nil
		return err
	}
	for set.Next() {
		sr := set.At()
		r.stats.seriesReturned.Add(1)
		if batchSize > 0 {
			pending = append(pending, sr)
			if len(pending) >= batchSize {
				if err := flush(); err != nil {
					return err
				}
			}
			continue
		}
		if err := srv.Send(storepb.NewSeriesResponse(sr)); err != nil {
			return err
		}
	}
	if err := set.Err(); err != nil {
		return toStatus(err)
	}
	if err := flush(); err != nil {
		return err
	}
	s.metrics.seriesDuration.Observe(time.Since(start).Seconds())
	return nil
}

func (s *Store) newRequest(mint, maxt int64, skipChunks bool, without []string) *request {
	r := &request{
		mint: s.limitMin(mint), maxt: s.limitMax(maxt), skipChunks: skipChunks,
		stats: &queryStats{}, limits: s.opts.Limits,
		onLimitDrop: func(reason string) { s.metrics.queriesDropped.WithLabelValues(reason).Inc() },
	}
	if len(without) > 0 {
		r.withoutExt = make(map[string]struct{}, len(without))
		for _, l := range without {
			r.withoutExt[l] = struct{}{}
		}
	}
	return r
}

// toStatus keeps gRPC statuses (limits) and maps the rest to Internal or
// the context's code.
func toStatus(err error) error {
	if st, ok := status.FromError(err); ok {
		return st.Err()
	}
	var se interface{ GRPCStatus() *status.Status }
	if errors.As(err, &se) {
		return status.Error(se.GRPCStatus().Code(), err.Error())
	}
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return status.FromContextError(err).Err()
	}
	return status.Error(codes.Internal, err.Error())
}
