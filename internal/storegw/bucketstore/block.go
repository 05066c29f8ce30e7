package bucketstore

import (
	"bufio"
	"cmp"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"path"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/oklog/ulid/v2"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/storage"
	"github.com/prometheus/prometheus/tsdb/chunkenc"
	"github.com/prometheus/prometheus/tsdb/chunks"
	"github.com/prometheus/prometheus/tsdb/encoding"
	"github.com/prometheus/prometheus/tsdb/index"
	"github.com/thanos-io/objstore"
	"golang.org/x/sync/errgroup"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/stevedore-dev/stevedore/internal/block"
	"github.com/stevedore-dev/stevedore/internal/storegw/cache"
	"github.com/stevedore-dev/stevedore/internal/storegw/indexheader"
	"github.com/stevedore-dev/stevedore/internal/storepb"
)

const (
	// maxGapSize is the largest gap between wanted byte ranges that is read
	// rather than split into two requests (Thanos's partitioner default).
	maxGapSize = 512 << 10
	// defaultMaxSeriesSize and defaultMaxChunkSize estimate the size of one
	// series entry or chunk when meta.json has no index stats; an entry
	// longer than the estimate is read again with its exact length.
	defaultMaxSeriesSize = 64 << 10
	defaultMaxChunkSize  = 16000
	// fetchConcurrency bounds the concurrent range reads of one block request.
	fetchConcurrency = 8
)

// bucketBlock is a block served from object storage, with its index-header on local disk.
type bucketBlock struct {
	meta    *block.Meta
	dir     string
	bkt     objstore.BucketReader
	ih      indexheader.Reader
	ihSize  int64
	extLset labels.Labels
	cache   *cache.IndexCache
	// pending counts requests using the block; it is closed only after them.
	pending sync.WaitGroup

	indexSize     int64
	segmentSizes  []int64 // by segment sequence (file 000001 is 0)
	maxSeriesSize int64
	maxChunkSize  int64
}

func (b *bucketBlock) id() ulid.ULID { return b.meta.ULID }

// overlaps reports whether the half-open block range [MinTime, MaxTime)
// overlaps the closed interval [mint, maxt].
func (b *bucketBlock) overlaps(mint, maxt int64) bool {
	return b.meta.MinTime <= maxt && mint < b.meta.MaxTime
}

// objectSizes fills in the sizes of the index and the chunk segment files,
// from meta.json when the uploader recorded them and from the bucket otherwise.
func (b *bucketBlock) objectSizes(ctx context.Context) error {
	sizes := map[string]int64{}
	for _, f := range b.meta.Thanos.Files {
		if f.SizeBytes > 0 {
			sizes[f.RelPath] = f.SizeBytes
		}
	}
	size := func(rel string) (int64, error) {
		if s, ok := sizes[rel]; ok {
			return s, nil
		}
		a, err := b.bkt.Attributes(ctx, path.Join(b.id().String(), rel))
		if err != nil {
			return 0, fmt.Errorf("attributes of %s/%s: %w", b.id(), rel, err)
		}
		return a.Size, nil
	}
	var err error
	if b.indexSize, err = size(block.IndexFilename); err != nil {
		return err
	}
	segments := b.meta.Thanos.SegmentFiles
	if len(segments) == 0 {
		err := b.bkt.Iter(ctx, path.Join(b.id().String(), block.ChunksDirname)+"/", func(name string) error {
			segments = append(segments, path.Base(name))
			return nil
		})
		if err != nil {
			return fmt.Errorf("list chunk segments of %s: %w", b.id(), err)
		}
	}
	sort.Strings(segments)
	for i, s := range segments {
		if n, err := strconv.Atoi(s); err != nil || n != i+1 {
			return fmt.Errorf("block %s: unexpected chunk segment file %q", b.id(), s)
		}
		sz, err := size(path.Join(block.ChunksDirname, s))
		if err != nil {
			return err
		}
		b.segmentSizes = append(b.segmentSizes, sz)
	}
	b.maxSeriesSize = defaultMaxSeriesSize
	if s := b.meta.Thanos.IndexStats.SeriesMaxSize; s > 0 {
		b.maxSeriesSize = s
	}
	b.maxChunkSize = defaultMaxChunkSize
	if s := b.meta.Thanos.IndexStats.ChunkMaxSize; s > 0 {
		b.maxChunkSize = s
	}
	return nil
}

// readRange reads length bytes at off of object name.
func (b *bucketBlock) readRange(ctx context.Context, name string, off, length int64, st *queryStats) ([]byte, error) {
	rc, err := b.bkt.GetRange(ctx, name, off, length)
	if err != nil {
		return nil, fmt.Errorf("get range %d+%d of %s: %w", off, length, name, err)
	}
	defer func() { _ = rc.Close() }()
	buf := make([]byte, length)
	n, err := io.ReadFull(rc, buf)
	if err != nil && !errors.Is(err, io.ErrUnexpectedEOF) {
		return nil, fmt.Errorf("read range %d+%d of %s: %w", off, length, name, err)
	}
	st.addFetched(n)
	return buf[:n], nil
}

// fetchPostings returns the postings lists of keys, from the index cache or
// from ranged reads of the index located by the index-header.
func (b *bucketBlock) fetchPostings(ctx context.Context, keys []labels.Label, st *queryStats) (map[labels.Label][]storage.SeriesRef, error) {
	out := make(map[labels.Label][]storage.SeriesRef, len(keys))
	hits, misses := b.cache.FetchPostings(ctx, b.id(), keys)
	for k, v := range hits {
		refs, err := decodePostings(v)
		if err != nil {
			misses = append(misses, k)
			continue
		}
		out[k] = refs
	}
	if len(misses) == 0 {
		return out, nil
	}
	sortLabelKeys(misses)
	type ptr struct {
		key labels.Label
		rng index.Range
	}
	var ptrs []ptr
	for i := 0; i < len(misses); {
		j := i
		for j < len(misses) && misses[j].Name == misses[i].Name {
			j++
		}
		vals := make([]string, 0, j-i)
		for _, k := range misses[i:j] {
			vals = append(vals, k.Value)
		}
		rngs, err := b.ih.PostingsOffsets(misses[i].Name, vals...)
		if err != nil {
			return nil, fmt.Errorf("postings offsets of %s: %w", misses[i].Name, err)
		}
		for x, r := range rngs {
			if r == indexheader.NotFound || r.Start < 0 {
				out[misses[i+x]] = nil
				continue
			}
			r.End = min(r.End, b.indexSize)
			ptrs = append(ptrs, ptr{key: misses[i+x], rng: r})
		}
		i = j
	}
	sort.Slice(ptrs, func(i, j int) bool { return ptrs[i].rng.Start < ptrs[j].rng.Start })
	parts := partition(len(ptrs), func(i int) (uint64, uint64) {
		return uint64(ptrs[i].rng.Start), uint64(ptrs[i].rng.End)
	}, maxGapSize)

	var mu sync.Mutex
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(fetchConcurrency)
	name := block.IndexObject(b.id())
	for _, p := range parts {
		g.Go(func() error {
			buf, err := b.readRange(gctx, name, int64(p.start), int64(p.end-p.start), st)
			if err != nil {
				return err
			}
			for _, pt := range ptrs[p.elemStart:p.elemEnd] {
				lo := uint64(pt.rng.Start) - p.start
				hi := min(uint64(pt.rng.End)-p.start, uint64(len(buf)))
				if lo+4 > hi {
					return fmt.Errorf("postings of %s in block %s: short read", pt.key, b.id())
				}
				raw := buf[lo:hi]
				n := binary.BigEndian.Uint32(raw)
				if 4+4*uint64(n) > uint64(len(raw)) {
					return fmt.Errorf("postings of %s in block %s: %d entries overflow %d bytes", pt.key, b.id(), n, len(raw))
				}
				raw = append([]byte(nil), raw[:4+4*n]...)
				refs, err := decodePostings(raw)
				if err != nil {
					return err
				}
				b.cache.StorePostings(b.id(), pt.key, raw)
				mu.Lock()
				out[pt.key] = refs
				mu.Unlock()
			}
			return nil
		})
	}
	if err := g.Wait(); err != nil {
		return nil, err
	}
	st.addPostings(len(keys))
	return out, nil
}

// decodePostings decodes a raw postings list: count, then BE32 series IDs.
func decodePostings(b []byte) ([]storage.SeriesRef, error) {
	if len(b) < 4 {
		return nil, fmt.Errorf("postings list of %d bytes", len(b))
	}
	n := int(binary.BigEndian.Uint32(b))
	if len(b) < 4+4*n {
		return nil, fmt.Errorf("postings list of %d entries in %d bytes", n, len(b))
	}
	out := make([]storage.SeriesRef, n)
	for i := range out {
		out[i] = storage.SeriesRef(binary.BigEndian.Uint32(b[4+4*i:]))
	}
	return out, nil
}

// loadSeries returns the series entries (without length and CRC) of the
// series IDs ids, sorted ascending, in the same order. With cacheMisses the
// entries read from the bucket are added to the index cache.
func (b *bucketBlock) loadSeries(ctx context.Context, ids []storage.SeriesRef, cacheMisses bool, st *queryStats) ([][]byte, error) {
	out := make([][]byte, len(ids))
	hits, misses := b.cache.FetchSeries(ctx, b.id(), ids)
	if len(misses) == 0 {
		for i, id := range ids {
			out[i] = hits[id]
		}
		return out, nil
	}
	// pos[i] is where misses[i] goes in out; both lists are sorted.
	pos := make([]int, 0, len(misses))
	for i, id := range ids {
		if len(pos) < len(misses) && misses[len(pos)] == id {
			pos = append(pos, i)
		} else {
			out[i] = hits[id]
		}
	}
	// Series entries are 16-byte aligned in index format v2: the ID is offset/16.
	parts := partition(len(misses), func(i int) (uint64, uint64) {
		off := uint64(misses[i]) * 16
		return off, min(off+uint64(b.maxSeriesSize), uint64(b.indexSize))
	}, maxGapSize)

	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(fetchConcurrency)
	name := block.IndexObject(b.id())
	for _, p := range parts {
		g.Go(func() error {
			buf, err := b.readRange(gctx, name, int64(p.start), int64(p.end-p.start), st)
			if err != nil {
				return err
			}
			for i := p.elemStart; i < p.elemEnd; i++ {
				off := uint64(misses[i])*16 - p.start
				entry, ok := seriesEntry(buf, off)
				if !ok {
					// Longer than estimated: read it again on its own.
					entry, err = b.readSeriesExact(gctx, name, uint64(misses[i])*16, st)
					if err != nil {
						return err
					}
				}
				// Entries share buf: callers copy what they keep, and the
				// cache copies what it stores.
				out[pos[i]] = entry
			}
			if cacheMisses {
				fetched := make(map[storage.SeriesRef][]byte, p.elemEnd-p.elemStart)
				for i := p.elemStart; i < p.elemEnd; i++ {
					fetched[misses[i]] = out[pos[i]]
				}
				b.cache.StoreSeries(b.id(), fetched)
			}
			return nil
		})
	}
	if err := g.Wait(); err != nil {
		return nil, err
	}
	return out, nil
}

// seriesEntry returns the entry at off in buf, if buf holds all of it.
func seriesEntry(buf []byte, off uint64) ([]byte, bool) {
	if off >= uint64(len(buf)) {
		return nil, false
	}
	l, n := binary.Uvarint(buf[off:])
	if n <= 0 {
		return nil, false
	}
	start := off + uint64(n)
	if start+l > uint64(len(buf)) {
		return nil, false
	}
	return buf[start : start+l], true
}

func (b *bucketBlock) readSeriesExact(ctx context.Context, name string, off uint64, st *queryStats) ([]byte, error) {
	head, err := b.readRange(ctx, name, int64(off), min(binary.MaxVarintLen64, b.indexSize-int64(off)), st)
	if err != nil {
		return nil, err
	}
	l, n := binary.Uvarint(head)
	if n <= 0 || int64(off)+int64(n)+int64(l) > b.indexSize {
		return nil, fmt.Errorf("block %s: invalid series entry at %d", b.id(), off)
	}
	return b.readRange(ctx, name, int64(off)+int64(n), int64(l), st)
}

// symbolizedLabel is a label as symbol references of the index.
type symbolizedLabel struct{ name, value uint32 }

// decodeSeries decodes a series entry, appending to chks the chunks
// overlapping [mint, maxt]. With skipChunks it stops at the first such chunk.
// ok is false when no chunk overlaps.
func decodeSeries(b []byte, lset *[]symbolizedLabel, chks *[]chunkMeta, skipChunks bool, mint, maxt int64) (ok bool, err error) {
	*lset = (*lset)[:0]
	before := len(*chks)
	d := encoding.Decbuf{B: b}
	k := d.Uvarint()
	for i := 0; i < k && d.Err() == nil; i++ {
		n := uint32(d.Uvarint())
		v := uint32(d.Uvarint())
		*lset = append(*lset, symbolizedLabel{name: n, value: v})
	}
	k = d.Uvarint()
	if d.Err() != nil {
		return false, fmt.Errorf("decode series entry: %w", d.Err())
	}
	var cMin, cMax, ref int64
	for i := 0; i < k; i++ {
		if i == 0 {
			cMin = d.Varint64()
			cMax = int64(d.Uvarint64()) + cMin
			ref = int64(d.Uvarint64())
		} else {
			cMin = cMax + int64(d.Uvarint64())
			cMax = int64(d.Uvarint64()) + cMin
			ref += d.Varint64()
		}
		if d.Err() != nil {
			return false, fmt.Errorf("decode series chunks: %w", d.Err())
		}
		if cMin > maxt {
			break
		}
		if cMax >= mint {
			if skipChunks {
				return true, nil
			}
			*chks = append(*chks, chunkMeta{ref: chunks.ChunkRef(ref), minTime: cMin, maxTime: cMax})
		}
	}
	return len(*chks) > before, nil
}

// chunkLoad is one chunk to read, and the wireBatch chunk it fills.
type chunkLoad struct {
	ref chunks.ChunkRef
	dst int32
}

func segmentObject(id ulid.ULID, seq int) string {
	return block.ChunksObject(id, fmt.Sprintf("%06d", seq+1))
}

// loadChunks reads the chunks of loads into wb with ranged reads of the
// segment files, merging nearby chunks into one request, and returns how
// many samples they hold.
func (b *bucketBlock) loadChunks(ctx context.Context, loads []chunkLoad, wb *wireBatch, aggrs []storepb.Aggr, st *queryStats) (int, error) {
	slices.SortFunc(loads, func(x, y chunkLoad) int { return cmp.Compare(x.ref, y.ref) })
	type job struct {
		name string
		size uint64
		p    part
		ls   []chunkLoad
	}
	var jobs []job
	for i := 0; i < len(loads); {
		seq := int(uint64(loads[i].ref) >> 32)
		if seq >= len(b.segmentSizes) {
			return 0, fmt.Errorf("block %s: chunk ref %d points to missing segment %d", b.id(), loads[i].ref, seq+1)
		}
		j := i + 1
		for j < len(loads) && int(uint64(loads[j].ref)>>32) == seq {
			j++
		}
		ls, size, name := loads[i:j], uint64(b.segmentSizes[seq]), segmentObject(b.id(), seq)
		for _, p := range partition(len(ls), func(k int) (uint64, uint64) {
			off := uint64(uint32(ls[k].ref))
			return off, min(off+uint64(b.maxChunkSize), size)
		}, maxGapSize) {
			jobs = append(jobs, job{name: name, size: size, p: p, ls: ls[p.elemStart:p.elemEnd]})
		}
		i = j
	}
	wb.bufs = make([][]byte, len(jobs))
	var samples atomic.Int64
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(fetchConcurrency)
	for k, j := range jobs {
		g.Go(func() error {
			n, err := b.readChunkPart(gctx, j.name, j.size, j.p, j.ls, wb, uint32(k), aggrs, st)
			samples.Add(int64(n))
			return err
		})
	}
	err := g.Wait()
	return int(samples.Load()), err
}

// chunkReaders are the buffered readers of chunk ranges, reused: allocating
// (and zeroing) one per range read cost as much CPU as reading small ranges.
var chunkReaders = sync.Pool{New: func() any { return bufio.NewReaderSize(nil, 256<<10) }}

// readChunkPart reads the chunks ls (sorted by offset) with one ranged read
// of part p of segment name, and encodes them for the wire into wb.bufs[k].
// The range is streamed, as Thanos does: gaps between wanted chunks are
// discarded rather than buffered, so that a sparse selection (one series in
// six for job=~"a|b",zone="c") allocates what it returns, not the range.
func (b *bucketBlock) readChunkPart(ctx context.Context, name string, size uint64, p part, ls []chunkLoad, wb *wireBatch, k uint32, aggrs []storepb.Aggr, st *queryStats) (samples int, err error) {
	rc, err := b.bkt.GetRange(ctx, name, int64(p.start), int64(p.end-p.start))
	if err != nil {
		return 0, fmt.Errorf("get range %d+%d of %s: %w", p.start, p.end-p.start, name, err)
	}
	defer func() { _ = rc.Close() }()
	br := chunkReaders.Get().(*bufio.Reader)
	br.Reset(rc)
	defer chunkReaders.Put(br)
	pos := p.start
	defer func() { st.addFetched(int(pos - p.start)) }()

	// Chunks are contiguous in a segment: the distance to the next wanted
	// chunk bounds a chunk's size, and so the buffer the part needs.
	capacity := 0
	for i, l := range ls {
		next := p.end
		if i+1 < len(ls) {
			next = uint64(uint32(ls[i+1].ref))
		}
		capacity += int(min(next-uint64(uint32(l.ref)), uint64(b.maxChunkSize))) + wireChunkOverhead
	}
	buf := make([]byte, 0, capacity)
	var subs []storepb.SubChunk
	add := func(l chunkLoad, enc chunkenc.Encoding, data []byte) error {
		c := &wb.chunks[l.dst]
		off := len(buf)
		if enc == chunkEncAggr {
			var n int
			var err error
			if subs, n, err = aggrSubChunks(subs[:0], data, aggrs); err != nil {
				return fmt.Errorf("block %s chunk %d: %w", b.id(), l.ref, err)
			}
			buf = storepb.AppendSeriesAggrChunk(buf, c.minTime, c.maxTime, subs)
			samples += n
		} else {
			t, err := storeEncoding(enc)
			if err != nil {
				return fmt.Errorf("block %s chunk %d: %w", b.id(), l.ref, err)
			}
			buf = storepb.AppendSeriesChunk(buf, c.minTime, c.maxTime, t, data, hashChunk(data))
			samples += numSamples(data)
		}
		c.buf, c.off, c.len = k, uint32(off), uint32(len(buf)-off)
		return nil
	}
	for _, l := range ls {
		off := uint64(uint32(l.ref))
		if off < pos {
			return samples, fmt.Errorf("block %s: chunk %d overlaps the previous chunk", b.id(), l.ref)
		}
		n, err := br.Discard(int(off - pos))
		pos += uint64(n)
		if err != nil {
			return samples, fmt.Errorf("read range %d+%d of %s: %w", p.start, p.end-p.start, name, err)
		}
		// Length (uvarint), encoding byte, data.
		head, _ := br.Peek(binary.MaxVarintLen32 + 1)
		length, vn := binary.Uvarint(head)
		if vn <= 0 || vn >= len(head) || off+uint64(vn)+1+length > p.end {
			// Longer than estimated: read it on its own.
			enc, data, err := b.readChunkExact(ctx, name, off, size, st)
			if err != nil {
				return samples, err
			}
			if err := add(l, enc, data); err != nil {
				return samples, err
			}
			continue
		}
		enc := chunkenc.Encoding(head[vn])
		n, _ = br.Discard(vn + 1)
		pos += uint64(n)
		// Encode straight from the reader's buffer when the chunk fits in it.
		data, err := br.Peek(int(length))
		peeked := err == nil
		if errors.Is(err, bufio.ErrBufferFull) {
			data = make([]byte, length)
			_, err = io.ReadFull(br, data)
		}
		if err != nil {
			return samples, fmt.Errorf("read chunk %d of %s: %w", l.ref, name, err)
		}
		if err := add(l, enc, data); err != nil {
			return samples, err
		}
		if peeked {
			_, _ = br.Discard(int(length))
		}
		pos += length
	}
	wb.bufs[k] = buf
	// Drain the estimated tail so that the connection can be reused.
	n, err := io.Copy(io.Discard, br)
	pos += uint64(n)
	if err != nil {
		return samples, fmt.Errorf("read range %d+%d of %s: %w", p.start, p.end-p.start, name, err)
	}
	return samples, nil
}

// chunkEncAggr is the encoding of the chunks of downsampled blocks: up to
// five aggregates (count, sum, min, max, counter) of the raw samples, each a
// chunk of its own, as Thanos's compactor writes them.
const chunkEncAggr = chunkenc.Encoding(0xff)

// aggrSubChunks appends to subs the aggregates aggrs (sorted) of the
// downsampled chunk data, and returns the samples the count aggregate holds.
// The data is, per aggregate in order count, sum, min, max, counter: a
// uvarint length, then (unless 0: aggregate absent) an encoding byte and the
// chunk bytes.
func aggrSubChunks(subs []storepb.SubChunk, data []byte, aggrs []storepb.Aggr) ([]storepb.SubChunk, int, error) {
	var parts [5]struct {
		enc  chunkenc.Encoding
		data []byte
		ok   bool
	}
	b := data
	for i := range parts {
		l, n := binary.Uvarint(b)
		if n <= 0 || uint64(len(b)-n) < l+min(l, 1) {
			return subs, 0, fmt.Errorf("invalid downsampled chunk: aggregate %d is cut short", i)
		}
		b = b[n:]
		if l == 0 {
			continue
		}
		parts[i].enc, parts[i].data, parts[i].ok = chunkenc.Encoding(b[0]), b[1:1+l], true
		b = b[1+l:]
	}
	for _, a := range aggrs {
		i := int(a) - 1 // Aggr_COUNT is 1, the first part.
		if i < 0 || i >= len(parts) {
			continue
		}
		if !parts[i].ok {
			return subs, 0, status.Errorf(codes.InvalidArgument, "aggregate %s does not exist in the downsampled chunk", strings.ToLower(a.String()))
		}
		t, err := storeEncoding(parts[i].enc)
		if err != nil {
			return subs, 0, err
		}
		subs = append(subs, storepb.SubChunk{Aggr: a, Enc: t, Data: parts[i].data, Hash: hashChunk(parts[i].data)})
	}
	samples := 0
	if parts[0].ok {
		samples = numSamples(parts[0].data)
	}
	return subs, samples, nil
}

// wireChunkOverhead bounds what the wire encoding adds to a chunk's data:
// tags, lengths, times and hash.
const wireChunkOverhead = 48

// chunkAt parses the chunk at off: uvarint data length, encoding byte, data.
func chunkAt(buf []byte, off uint64) (chunkenc.Encoding, []byte, bool) {
	if off >= uint64(len(buf)) {
		return 0, nil, false
	}
	l, n := binary.Uvarint(buf[off:])
	if n <= 0 {
		return 0, nil, false
	}
	start := off + uint64(n) + 1
	if start+l > uint64(len(buf)) {
		return 0, nil, false
	}
	return chunkenc.Encoding(buf[off+uint64(n)]), buf[start : start+l], true
}

func (b *bucketBlock) readChunkExact(ctx context.Context, name string, off, size uint64, st *queryStats) (chunkenc.Encoding, []byte, error) {
	if off >= size {
		return 0, nil, fmt.Errorf("chunk offset %d beyond %s (%d bytes)", off, name, size)
	}
	head, err := b.readRange(ctx, name, int64(off), int64(min(binary.MaxVarintLen32+1, size-off)), st)
	if err != nil {
		return 0, nil, err
	}
	l, n := binary.Uvarint(head)
	if n <= 0 || off+uint64(n)+1+l > size {
		return 0, nil, fmt.Errorf("invalid chunk at %d of %s", off, name)
	}
	buf, err := b.readRange(ctx, name, int64(off), int64(uint64(n)+1+l), st)
	if err != nil {
		return 0, nil, err
	}
	enc, data, ok := chunkAt(buf, 0)
	if !ok {
		return 0, nil, fmt.Errorf("short chunk at %d of %s", off, name)
	}
	return enc, data, nil
}

func storeEncoding(e chunkenc.Encoding) (storepb.Chunk_Encoding, error) {
	switch e {
	case chunkenc.EncXOR:
		return storepb.Chunk_XOR, nil
	case chunkenc.EncHistogram:
		return storepb.Chunk_HISTOGRAM, nil
	case chunkenc.EncFloatHistogram:
		return storepb.Chunk_FLOAT_HISTOGRAM, nil
	}
	return 0, fmt.Errorf("unsupported chunk encoding %v", e)
}

// numSamples reads the sample count every chunk encoding starts with.
func numSamples(data []byte) int {
	if len(data) < 2 {
		return 0
	}
	return int(binary.BigEndian.Uint16(data))
}
