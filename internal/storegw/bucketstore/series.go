package bucketstore

import (
	"bytes"
	"cmp"
	"container/heap"
	"context"
	"errors"
	"fmt"
	"math"
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
	seriesBatch = 16384
	// chunkBatch bounds the chunks held in memory per block while streaming:
	// memory depends on this, not on the size of the answer.
	chunkBatch = 8192
	// firstChunkBatch is the size of a block's first batch; batches grow to
	// chunkBatch from there. The merge can send nothing before every block
	// has delivered a batch: small first batches let sending start early
	// and overlap with reading the rest.
	firstChunkBatch = 256
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
	// shard selects the series of one shard of a vertically sharded query.
	shard *storepb.ShardMatcher
	// aggrs are the aggregates to return from downsampled chunks, sorted.
	aggrs []storepb.Aggr
}

// aggregates returns the requested aggregates of downsampled chunks sorted
// and without duplicates (RAW concerns raw chunks, always returned as such).
func aggregates(in []storepb.Aggr) []storepb.Aggr {
	var out []storepb.Aggr
	for _, a := range in {
		if a != storepb.Aggr_RAW && !slices.Contains(out, a) {
			out = append(out, a)
		}
	}
	slices.Sort(out)
	return out
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

// chunkMeta is where a chunk is and what it covers. Unlike chunks.Meta it
// holds no pointer.
type chunkMeta struct {
	ref              chunks.ChunkRef
	minTime, maxTime int64
}

// selection is the series of a block that a request selected, kept as their
// raw index entries: a few dozen bytes per series and no pointers, so that a
// query over millions of series holds little memory and gives the GC nothing
// to scan. Labels and chunks are decoded again batch by batch as they are
// streamed.
type selection struct {
	entries []byte
	ends    []uint32 // end of entry i in entries
	// order lists the entries in label order when index order is not label
	// order; see selectSeries.
	order []int32
}

func (s *selection) len() int { return len(s.ends) }

// entry returns the i-th series entry in label order.
func (s *selection) entry(i int) []byte {
	if s.order != nil {
		i = int(s.order[i])
	}
	start := uint32(0)
	if i > 0 {
		start = s.ends[i-1]
	}
	return s.entries[start:s.ends[i]]
}

// seriesDecoder turns selected entries into labels and chunk metas, reusing
// its buffers from series to series.
type seriesDecoder struct {
	b     *bucketBlock
	req   *request
	ext   []labels.Label
	sl    []symbolizedLabel
	metas []chunkMeta
	sb    labels.ScratchBuilder
}

func newSeriesDecoder(b *bucketBlock, req *request) *seriesDecoder {
	return &seriesDecoder{b: b, req: req, ext: b.externalLabels(req.withoutExt)}
}

// decodeChunks decodes entry data into d.sl and d.metas without resolving
// labels; ok is false when it has no chunk in the request range.
func (d *seriesDecoder) decodeChunks(data []byte) (ok bool, err error) {
	d.metas = d.metas[:0]
	return decodeSeries(data, &d.sl, &d.metas, d.req.skipChunks, d.req.mint, d.req.maxt)
}

// decode decodes entry data; ok is false when it has no chunk in the request
// range. The metas are valid until the next call.
func (d *seriesDecoder) decode(ctx context.Context, data []byte) (lset labels.Labels, metas []chunkMeta, ok bool, err error) {
	ok, err = d.decodeChunks(data)
	if err != nil || !ok {
		return labels.EmptyLabels(), nil, ok, err
	}
	lset, err = seriesLabels(ctx, d.b.ih, d.sl, d.ext, &d.sb)
	return lset, d.metas, err == nil, err
}

// maxCachedSelection is the largest selection (series of one block) whose
// series entries are added to the index cache. A query over most of a block
// would evict the entries of smaller, repeated queries (dashboards) and gain
// little itself: scans do not pollute the cache.
const maxCachedSelection = seriesBatch

// selectSeries returns the block's series matching ms with data in the
// request range, in the order of their labels with external labels attached.
// With ordered false (label names and values) the order does not matter.
func (b *bucketBlock) selectSeries(ctx context.Context, ms []*labels.Matcher, req *request, ordered bool) (*selection, error) {
	ids, err := b.expandPostings(ctx, ms, req.stats)
	if err != nil {
		return nil, fmt.Errorf("expand postings of block %s: %w", b.id(), err)
	}
	if err := req.touch(len(ids)); err != nil {
		return nil, err
	}
	var (
		sel   = &selection{ends: make([]uint32, 0, len(ids))}
		dec   = newSeriesDecoder(b, req)
		order *orderCheck
	)
	if ordered && len(dec.ext) > 0 {
		if order, err = newOrderCheck(b, dec); err != nil {
			return nil, err
		}
	}
	for start := 0; start < len(ids); start += seriesBatch {
		batch := ids[start:min(start+seriesBatch, len(ids))]
		raw, err := b.loadSeries(ctx, batch, len(ids) <= maxCachedSelection, req.stats)
		if err != nil {
			return nil, fmt.Errorf("load series of block %s: %w", b.id(), err)
		}
		req.stats.series.Add(int64(len(batch)))
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		for i, data := range raw {
			ok, err := dec.decodeChunks(data)
			if err != nil {
				return nil, fmt.Errorf("block %s series %d: %w", b.id(), batch[i], err)
			}
			if !ok {
				continue
			}
			if order != nil {
				if err := order.next(ctx, dec.sl); err != nil {
					return nil, fmt.Errorf("block %s series %d: %w", b.id(), batch[i], err)
				}
			}
			if len(sel.entries)+len(data) > math.MaxUint32 {
				return nil, status.Errorf(codes.ResourceExhausted, "block %s: the query selects more than 4 GiB of series entries", b.id())
			}
			sel.entries = append(sel.entries, data...)
			sel.ends = append(sel.ends, uint32(len(sel.entries)))
		}
	}
	if order != nil && !order.sorted {
		// Index order is label order, but an external label can land between
		// a series and a longer series sharing its prefix; sort, holding the
		// labels of this one block's selection for as long as it takes.
		if err := sel.sortByLabels(ctx, dec); err != nil {
			return nil, err
		}
	}
	return sel, nil
}

// orderCheck finds out whether series in index order stay in label order
// once the block's external labels are added. Series are compared by symbol
// references, which sort like the strings they stand for, and resolved to
// strings only when that cannot decide.
type orderCheck struct {
	dec    *seriesDecoder
	sorted bool
	// collide is set when an external label has the name of a series label
	// and replaces it: every pair is then compared with strings.
	collide bool
	prev    []symbolizedLabel
	sb      labels.ScratchBuilder
}

func newOrderCheck(b *bucketBlock, dec *seriesDecoder) (*orderCheck, error) {
	names, err := b.ih.LabelNames()
	if err != nil {
		return nil, fmt.Errorf("label names of block %s: %w", b.id(), err)
	}
	o := &orderCheck{dec: dec, sorted: true}
	for _, e := range dec.ext {
		if slices.Contains(names, e.Name) {
			o.collide = true
		}
	}
	return o, nil
}

// next checks the series with symbolized labels cur, which follows the
// previous one in the index.
func (o *orderCheck) next(ctx context.Context, cur []symbolizedLabel) error {
	if !o.sorted {
		return nil
	}
	defer func() { o.prev = append(o.prev[:0], cur...) }()
	if o.prev == nil {
		return nil
	}
	k := 0
	for k < len(o.prev) && k < len(cur) && o.prev[k] == cur[k] {
		k++
	}
	// Two series differing at a label both have keep their order when
	// labels of other names are added to both; only a series that is a
	// prefix of the next one can move after it.
	if !o.collide && k < len(o.prev) && k < len(cur) {
		return nil
	}
	a, err := seriesLabels(ctx, o.dec.b.ih, o.prev, o.dec.ext, &o.sb)
	if err != nil {
		return err
	}
	c, err := seriesLabels(ctx, o.dec.b.ih, cur, o.dec.ext, &o.sb)
	if err != nil {
		return err
	}
	if labels.Compare(a, c) > 0 {
		o.sorted = false
	}
	return nil
}

func (s *selection) sortByLabels(ctx context.Context, dec *seriesDecoder) error {
	lsets := make([]labels.Labels, s.len())
	order := make([]int32, s.len())
	for i := range lsets {
		lset, _, _, err := dec.decode(ctx, s.entry(i)) // In index order: s.order is not set yet.
		if err != nil {
			return err
		}
		lsets[i], order[i] = lset, int32(i)
	}
	slices.SortStableFunc(order, func(a, b int32) int { return labels.Compare(lsets[a], lsets[b]) })
	s.order = order
	return nil
}

// forEachLabels calls fn with the labels of every selected series.
func (s *selection) forEachLabels(ctx context.Context, dec *seriesDecoder, fn func(labels.Labels)) error {
	for i := range s.len() {
		lset, _, ok, err := dec.decode(ctx, s.entry(i))
		if err != nil {
			return err
		}
		if ok {
			fn(lset)
		}
	}
	return nil
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

// wireBatch is a batch of a block's series, ready to be merged and sent:
// labels, and chunks already encoded as Series.chunks elements in bufs. It
// holds a pointer per series and per fetched range, none per chunk.
type wireBatch struct {
	series []wireSeries
	chunks []wireChunk
	bufs   [][]byte
}

type wireSeries struct {
	lset     labels.Labels
	from, to int32 // chunks[from:to]
	// minTime and maxTime bound the series' chunks in this block.
	minTime, maxTime int64
	// spanBuf is the buffer holding all the series' chunks back to back, at
	// [spanOff, spanEnd), or -1 when they are not contiguous.
	spanBuf          int32
	spanOff, spanEnd uint32
}

// setSpans finds, for each series, whether its chunks were encoded back to
// back; they are when read in one part, as chunks of a series are stored
// together in a segment file. A contiguous series is merged and sent as one
// slice rather than chunk by chunk.
func (w *wireBatch) setSpans() {
	for i := range w.series {
		s := &w.series[i]
		s.spanBuf = -1
		if s.from == s.to {
			continue
		}
		first := &w.chunks[s.from]
		end := first.off + first.len
		ok := true
		for k := s.from + 1; k < s.to && ok; k++ {
			c := &w.chunks[k]
			ok = c.buf == first.buf && c.off == end
			end = c.off + c.len
		}
		if ok {
			s.spanBuf, s.spanOff, s.spanEnd = int32(first.buf), first.off, end
		}
	}
}

func (w *wireBatch) span(s *wireSeries) []byte { return w.bufs[s.spanBuf][s.spanOff:s.spanEnd] }

type wireChunk struct {
	minTime, maxTime int64
	buf, off, len    uint32 // bufs[buf][off:off+len]
}

func (w *wireBatch) chunk(i int32) []byte {
	c := &w.chunks[i]
	return w.bufs[c.buf][c.off : c.off+c.len]
}

// streamBlock sends the block's series in batches to out, reading chunks
// batch by batch. It closes out when done.
func (b *bucketBlock) streamBlock(ctx context.Context, ms []*labels.Matcher, req *request, out chan<- wireBatchOrErr) {
	defer close(out)
	send := func(v wireBatchOrErr) bool {
		select {
		case out <- v:
			return true
		case <-ctx.Done():
			return false
		}
	}
	sel, err := b.selectSeries(ctx, ms, req, true)
	if err != nil {
		send(wireBatchOrErr{err: err})
		return
	}
	dec := newSeriesDecoder(b, req)
	shard := req.shard.Clone()
	var loads []chunkLoad
	limit := firstChunkBatch
	for i := 0; i < sel.len(); limit = min(limit*4, chunkBatch) {
		wb := &wireBatch{}
		loads = loads[:0]
		for ; i < sel.len() && (len(wb.series) == 0 || len(wb.chunks) < limit); i++ {
			lset, metas, ok, err := dec.decode(ctx, sel.entry(i))
			if err != nil {
				send(wireBatchOrErr{err: fmt.Errorf("block %s: %w", b.id(), err)})
				return
			}
			if !ok || !shard.Matches(lset) {
				continue
			}
			ws := wireSeries{lset: lset, from: int32(len(wb.chunks)), minTime: math.MaxInt64, maxTime: math.MinInt64}
			for _, m := range metas {
				loads = append(loads, chunkLoad{ref: m.ref, dst: int32(len(wb.chunks))})
				wb.chunks = append(wb.chunks, wireChunk{minTime: m.minTime, maxTime: m.maxTime})
				ws.minTime, ws.maxTime = min(ws.minTime, m.minTime), max(ws.maxTime, m.maxTime)
			}
			ws.to = int32(len(wb.chunks))
			wb.series = append(wb.series, ws)
		}
		if len(loads) > 0 {
			samples, err := b.loadChunks(ctx, loads, wb, req.aggrs, req.stats)
			if err != nil {
				send(wireBatchOrErr{err: fmt.Errorf("load chunks of block %s: %w", b.id(), err)})
				return
			}
			wb.setSpans()
			req.stats.chunks.Add(int64(len(loads)))
			req.stats.samples.Add(int64(samples))
			if err := req.addSamples(samples); err != nil {
				send(wireBatchOrErr{err: err})
				return
			}
		}
		if !send(wireBatchOrErr{batch: wb}) {
			return
		}
	}
}

type wireBatchOrErr struct {
	batch *wireBatch
	err   error
}

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

// blocksFor picks the blocks covering [mint, maxt] as Thanos does: per
// external label set, blocks of the coarsest resolution not above maxRes,
// with the gaps they leave filled by finer resolutions, down to raw.
func blocksFor(bs []*bucketBlock, mint, maxt, maxRes int64) []*bucketBlock {
	if mint > maxt {
		return nil
	}
	// Block sets by external labels, then by resolution, coarsest first.
	sets := map[string]map[int64][]*bucketBlock{}
	for _, b := range bs {
		k := b.extLset.String()
		if sets[k] == nil {
			sets[k] = map[int64][]*bucketBlock{}
		}
		r := b.meta.Thanos.Downsample.Resolution
		sets[k][r] = append(sets[k][r], b)
	}
	var out []*bucketBlock
	for _, byRes := range sets {
		var resolutions []int64
		for r, blocks := range byRes {
			resolutions = append(resolutions, r)
			slices.SortFunc(blocks, func(a, b *bucketBlock) int { return cmp.Compare(a.meta.MinTime, b.meta.MinTime) })
		}
		slices.SortFunc(resolutions, func(a, b int64) int { return cmp.Compare(b, a) })
		i := 0
		for i < len(resolutions)-1 && resolutions[i] > maxRes {
			i++
		}
		if resolutions[i] > maxRes {
			continue // Only coarser data than asked for.
		}
		out = append(out, fillRange(byRes, resolutions[i:], mint, maxt)...)
	}
	return out
}

// fillRange returns the blocks of resolutions[0] overlapping [mint, maxt]
// and fills what they leave uncovered at either end with finer resolutions.
func fillRange(byRes map[int64][]*bucketBlock, resolutions []int64, mint, maxt int64) []*bucketBlock {
	if mint > maxt || len(resolutions) == 0 {
		return nil
	}
	var bs []*bucketBlock
	for _, b := range byRes[resolutions[0]] {
		// Block ranges are half-open: [MinTime, MaxTime).
		if b.meta.MaxTime <= mint {
			continue
		}
		if b.meta.MinTime > maxt {
			break
		}
		bs = append(bs, b)
	}
	finer := resolutions[1:]
	if len(finer) == 0 {
		return bs
	}
	if len(bs) == 0 {
		return fillRange(byRes, finer, mint, maxt)
	}
	left := fillRange(byRes, finer, mint, bs[0].meta.MinTime-1)
	right := fillRange(byRes, finer, bs[len(bs)-1].meta.MaxTime, maxt)
	return append(append(left, bs...), right...)
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
// chunkBatch rather than by the size of the answer. Responses are written as
// storepb.RawMessage: the server must use storepb.ServerCodec.
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
	r.shard = storepb.NewShardMatcher(req.GetShardInfo())
	r.aggrs = aggregates(req.GetAggregates())
	defer s.metrics.observe(r.stats)

	all, release := s.acquireBlocks()
	defer release()
	ctx, cancel := context.WithCancel(ctx)
	// Block readers must be done before the blocks are released: a sync may
	// close (unmap) a released block's index-header.
	var wg sync.WaitGroup
	defer wg.Wait()
	defer cancel()

	var cursors []*blockCursor
	for _, b := range blocksFor(all, r.mint, r.maxt, req.GetMaxResolutionWindow()) {
		bms, ok := matchersForBlock(b, ms)
		if !ok {
			continue
		}
		ch := make(chan wireBatchOrErr, 1)
		wg.Go(func() { b.streamBlock(ctx, bms, r, ch) })
		cursors = append(cursors, &blockCursor{ch: ch})
	}
	s.metrics.blocksQueried.Observe(float64(len(cursors)))

	w := responseWriter{srv: srv, batchSize: int(req.GetResponseBatchSize())}
	m := wireMerger{cursors: cursors}
	for m.next() {
		r.stats.seriesReturned.Add(1)
		if err := w.write(m.lset, m.chunks); err != nil {
			return err
		}
	}
	if err := m.err; err != nil {
		return toStatus(err)
	}
	if err := w.flush(); err != nil {
		return err
	}
	s.metrics.seriesDuration.Observe(time.Since(start).Seconds())
	return nil
}

// responseWriter encodes merged series into SeriesResponse messages, one
// series each or batchSize series per SeriesBatch when the client asks.
type responseWriter struct {
	srv       storepb.Store_SeriesServer
	batchSize int
	pending   []byte
	n         int
}

func (w *responseWriter) write(lset labels.Labels, chunks [][]byte) error {
	labelsSize := storepb.LabelsSize(lset)
	size := labelsSize
	for _, c := range chunks {
		size += len(c)
	}
	if w.batchSize > 0 {
		w.pending = storepb.AppendBatchSeries(w.pending, size)
		w.pending = storepb.AppendLabels(w.pending, lset)
		for _, c := range chunks {
			w.pending = append(w.pending, c...)
		}
		if w.n++; w.n >= w.batchSize {
			return w.flush()
		}
		return nil
	}
	head := make([]byte, 0, storepb.BytesFieldSize(size)-size+labelsSize)
	head = storepb.AppendSeriesResponse(head, size)
	head = storepb.AppendLabels(head, lset)
	// Chunks are sent from the buffers they were read into, without a copy.
	return w.srv.SendMsg(append(storepb.RawMessage{head}, chunks...))
}

func (w *responseWriter) flush() error {
	if w.n == 0 {
		return nil
	}
	msg := storepb.AppendBatchResponse(make([]byte, 0, storepb.BytesFieldSize(len(w.pending))), w.pending)
	// The transport may hold msg after SendMsg returns; pending is reused.
	w.pending, w.n = w.pending[:0], 0
	return w.srv.SendMsg(storepb.RawMessage{msg})
}

// blockCursor walks the batches a block streams.
type blockCursor struct {
	ch <-chan wireBatchOrErr
	b  *wireBatch
	i  int
}

// next moves to the next series; false at the end or on error.
func (c *blockCursor) next() (bool, error) {
	c.i++
	for c.b == nil || c.i >= len(c.b.series) {
		v, ok := <-c.ch
		if !ok {
			c.b = nil
			return false, nil
		}
		if v.err != nil {
			return false, v.err
		}
		c.b, c.i = v.batch, 0
	}
	return true, nil
}

func (c *blockCursor) at() *wireSeries { return &c.b.series[c.i] }

// wireMerger merges the sorted streams of blocks into one sorted stream.
// Series with equal labels become one series whose chunks are ordered by
// time, with identical chunks (from overlapping blocks or replicas of one
// block) kept once.
type wireMerger struct {
	cursors []*blockCursor
	h       cursorHeap
	started bool
	// taken are the cursors the current series came from, advanced on the
	// next call: until then the chunks point into their batches.
	taken  []*blockCursor
	lset   labels.Labels
	chunks [][]byte
	times  []wireChunk
	err    error
}

func (m *wireMerger) push(c *blockCursor) bool {
	ok, err := c.next()
	if err != nil {
		m.err = err
		return false
	}
	if ok {
		heap.Push(&m.h, c)
	}
	return true
}

func (m *wireMerger) next() bool {
	if m.err != nil {
		return false
	}
	if !m.started {
		m.started = true
		m.taken = m.cursors
	}
	for _, c := range m.taken {
		if !m.push(c) {
			return false
		}
	}
	m.taken = m.taken[:0]
	if len(m.h) == 0 {
		return false
	}
	m.lset = m.h[0].at().lset
	for len(m.h) > 0 && labels.Equal(m.h[0].at().lset, m.lset) {
		m.taken = append(m.taken, heap.Pop(&m.h).(*blockCursor))
	}
	m.gather()
	return true
}

// gather collects the chunks of the current series from the taken cursors.
// Blocks usually hold disjoint time ranges of a series: ordered by time, the
// blocks' parts are concatenated as they are. Parts that overlap in time
// are merged chunk by chunk.
func (m *wireMerger) gather() {
	m.chunks, m.times = m.chunks[:0], m.times[:0]
	// Insertion sort: a handful of blocks.
	for i := 1; i < len(m.taken); i++ {
		for j := i; j > 0 && m.taken[j].at().minTime < m.taken[j-1].at().minTime; j-- {
			m.taken[j], m.taken[j-1] = m.taken[j-1], m.taken[j]
		}
	}
	disjoint := true
	for i, c := range m.taken {
		s := c.at()
		if s.from < s.to && s.spanBuf < 0 || i > 0 && m.taken[i-1].at().maxTime >= s.minTime {
			disjoint = false
			break
		}
	}
	if disjoint {
		for _, c := range m.taken {
			if s := c.at(); s.from < s.to {
				m.chunks = append(m.chunks, c.b.span(s))
			}
		}
		return
	}
	for _, c := range m.taken {
		s := c.at()
		for i := s.from; i < s.to; i++ {
			m.chunks = append(m.chunks, c.b.chunk(i))
			m.times = append(m.times, c.b.chunks[i])
		}
	}
	if len(m.taken) > 1 {
		m.sortChunks()
	}
}

// sortChunks orders the chunks of a series gathered from several blocks by
// time and drops duplicates.
func (m *wireMerger) sortChunks() {
	idx := make([]int, len(m.chunks))
	for i := range idx {
		idx[i] = i
	}
	slices.SortStableFunc(idx, func(a, b int) int {
		ta, tb := m.times[a], m.times[b]
		if c := cmp.Compare(ta.minTime, tb.minTime); c != 0 {
			return c
		}
		return cmp.Compare(ta.maxTime, tb.maxTime)
	})
	out := make([][]byte, 0, len(idx))
	var last int
	for k, i := range idx {
		// The encoding holds the time range, type and data: equal bytes are
		// an identical chunk.
		if k > 0 && bytes.Equal(m.chunks[i], m.chunks[last]) {
			continue
		}
		out = append(out, m.chunks[i])
		last = i
	}
	m.chunks = out
}

type cursorHeap []*blockCursor

func (h cursorHeap) Len() int           { return len(h) }
func (h cursorHeap) Less(i, j int) bool { return labels.Compare(h[i].at().lset, h[j].at().lset) < 0 }
func (h cursorHeap) Swap(i, j int)      { h[i], h[j] = h[j], h[i] }
func (h *cursorHeap) Push(x any)        { *h = append(*h, x.(*blockCursor)) }
func (h *cursorHeap) Pop() any {
	old := *h
	x := old[len(old)-1]
	*h = old[:len(old)-1]
	return x
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
