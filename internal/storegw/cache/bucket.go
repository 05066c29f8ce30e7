package cache

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"path"
	"strconv"
	"time"

	"github.com/go-logr/logr"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/thanos-io/objstore"
)

// Operations of the caching bucket metrics.
const (
	opGet        = "get"
	opGetRange   = "getrange"
	opExists     = "exists"
	opIter       = "iter"
	opAttributes = "attributes"
)

// CachingBucket caches, in front of a bucket: sub-ranges of chunk segment
// files (the bulk of query traffic), object sizes of chunk files, meta.json
// and marker contents and existence, and the listing of the bucket root.
type CachingBucket struct {
	objstore.Bucket
	cache  Cache
	cfg    BucketCacheConfig
	logger logr.Logger

	requests    *prometheus.CounterVec
	hits        *prometheus.CounterVec
	fetchedFrom *prometheus.CounterVec
}

// NewCachingBucketFromConfig wraps bkt with the cache described by c.
func NewCachingBucketFromConfig(bkt objstore.Bucket, c *BucketCacheConfig, logger logr.Logger, reg prometheus.Registerer) (*CachingBucket, error) {
	backend, err := newBackend("caching-bucket", c.Type, c.Config, 1<<30, logger, reg)
	if err != nil {
		return nil, err
	}
	return NewCachingBucket(bkt, backend, *c, logger, reg), nil
}

// NewCachingBucket wraps bkt with backend.
func NewCachingBucket(bkt objstore.Bucket, backend Cache, cfg BucketCacheConfig, logger logr.Logger, reg prometheus.Registerer) *CachingBucket {
	cb := &CachingBucket{
		Bucket: bkt, cache: backend, cfg: cfg, logger: logger,
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "thanos_store_bucket_cache_operation_requests_total", Help: "Number of requested operations matching given config.",
		}, []string{"operation", "config"}),
		hits: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "thanos_store_bucket_cache_operation_hits_total", Help: "Number of operations served from cache for given config.",
		}, []string{"operation", "config"}),
		fetchedFrom: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "thanos_store_bucket_cache_getrange_fetched_bytes_total", Help: "Bytes of chunk sub-ranges returned, by origin.",
		}, []string{"origin"}),
	}
	if reg != nil {
		reg.MustRegister(cb.requests, cb.hits, cb.fetchedFrom)
	}
	return cb
}

func isChunkFile(name string) bool { return path.Base(path.Dir(name)) == "chunks" }

func isMetaFile(name string) bool {
	switch path.Base(name) {
	case "meta.json", "deletion-mark.json", "no-compact-mark.json":
		return true
	}
	return false
}

func (cb *CachingBucket) hit(op, cfg string, hit bool) {
	cb.requests.WithLabelValues(op, cfg).Inc()
	if hit {
		cb.hits.WithLabelValues(op, cfg).Inc()
	}
}

// Iter implements objstore.Bucket, caching the listing of the root.
func (cb *CachingBucket) Iter(ctx context.Context, dir string, f func(string) error, options ...objstore.IterOption) error {
	if dir != "" || len(options) > 0 {
		return cb.Bucket.Iter(ctx, dir, f, options...)
	}
	const k = "iter:root"
	if v, ok := cb.cache.Fetch(ctx, []string{k})[k]; ok {
		var names []string
		if err := json.Unmarshal(v, &names); err == nil {
			cb.hit(opIter, "blocks-iter", true)
			for _, n := range names {
				if err := f(n); err != nil {
					return err
				}
			}
			return nil
		}
	}
	cb.hit(opIter, "blocks-iter", false)
	var names []string
	err := cb.Bucket.Iter(ctx, dir, func(n string) error {
		names = append(names, n)
		return f(n)
	})
	if err == nil {
		if b, err := json.Marshal(names); err == nil {
			cb.cache.Store(map[string][]byte{k: b}, cb.cfg.BlocksIterTTL)
		}
	}
	return err
}

// Exists implements objstore.Bucket, caching answers for meta files.
func (cb *CachingBucket) Exists(ctx context.Context, name string) (bool, error) {
	if !isMetaFile(name) {
		return cb.Bucket.Exists(ctx, name)
	}
	k := "exists:" + name
	if v, ok := cb.cache.Fetch(ctx, []string{k})[k]; ok && len(v) == 1 {
		cb.hit(opExists, "metafile", true)
		return v[0] == 1, nil
	}
	cb.hit(opExists, "metafile", false)
	ok, err := cb.Bucket.Exists(ctx, name)
	if err == nil {
		cb.storeExists(name, ok)
	}
	return ok, err
}

func (cb *CachingBucket) storeExists(name string, ok bool) {
	v, ttl := []byte{0}, cb.cfg.MetafileDoesntExistTTL
	if ok {
		v, ttl = []byte{1}, cb.cfg.MetafileExistsTTL
	}
	cb.cache.Store(map[string][]byte{"exists:" + name: v}, ttl)
}

// Get implements objstore.Bucket, caching the contents of meta files.
func (cb *CachingBucket) Get(ctx context.Context, name string) (io.ReadCloser, error) {
	if !isMetaFile(name) {
		return cb.Bucket.Get(ctx, name)
	}
	ck, ek := "content:"+name, "exists:"+name
	got := cb.cache.Fetch(ctx, []string{ck, ek})
	if v, ok := got[ck]; ok {
		cb.hit(opGet, "metafile", true)
		return io.NopCloser(bytes.NewReader(v)), nil
	}
	if v, ok := got[ek]; ok && len(v) == 1 && v[0] == 0 {
		cb.hit(opGet, "metafile", true)
		return nil, notFoundError{name: name, bkt: cb.Bucket}
	}
	cb.hit(opGet, "metafile", false)
	rc, err := cb.Bucket.Get(ctx, name)
	if err != nil {
		if cb.Bucket.IsObjNotFoundErr(err) {
			cb.storeExists(name, false)
		}
		return nil, err
	}
	defer func() { _ = rc.Close() }()
	b, err := io.ReadAll(rc)
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", name, err)
	}
	if int64(len(b)) <= int64(cb.cfg.MetafileMaxSize) {
		cb.cache.Store(map[string][]byte{ck: b}, cb.cfg.MetafileContentTTL)
		cb.storeExists(name, true)
	}
	return io.NopCloser(bytes.NewReader(b)), nil
}

// notFoundError is a cached "object does not exist"; IsObjNotFoundErr knows it.
type notFoundError struct {
	name string
	bkt  objstore.Bucket
}

func (e notFoundError) Error() string {
	return fmt.Sprintf("object %s does not exist (cached)", e.name)
}

// IsObjNotFoundErr implements objstore.Bucket.
func (cb *CachingBucket) IsObjNotFoundErr(err error) bool {
	if errors.As(err, new(notFoundError)) {
		return true
	}
	return cb.Bucket.IsObjNotFoundErr(err)
}

// Attributes implements objstore.Bucket, caching chunk file sizes.
func (cb *CachingBucket) Attributes(ctx context.Context, name string) (objstore.ObjectAttributes, error) {
	if !isChunkFile(name) {
		return cb.Bucket.Attributes(ctx, name)
	}
	return cb.chunkAttrs(ctx, name)
}

func (cb *CachingBucket) chunkAttrs(ctx context.Context, name string) (objstore.ObjectAttributes, error) {
	k := "attrs:" + name
	if v, ok := cb.cache.Fetch(ctx, []string{k})[k]; ok && len(v) == 16 {
		cb.hit(opAttributes, "chunks", true)
		return objstore.ObjectAttributes{
			Size:         int64(binary.BigEndian.Uint64(v)),
			LastModified: time.Unix(0, int64(binary.BigEndian.Uint64(v[8:]))),
		}, nil
	}
	cb.hit(opAttributes, "chunks", false)
	a, err := cb.Bucket.Attributes(ctx, name)
	if err != nil {
		return a, err
	}
	var v [16]byte
	binary.BigEndian.PutUint64(v[:], uint64(a.Size))
	binary.BigEndian.PutUint64(v[8:], uint64(a.LastModified.UnixNano()))
	cb.cache.Store(map[string][]byte{k: v[:]}, cb.cfg.ChunkObjectAttrsTTL)
	return a, nil
}

func subrangeKey(name string, start, end int64) string {
	return "subrange:" + name + ":" + strconv.FormatInt(start, 10) + ":" + strconv.FormatInt(end, 10)
}

// GetRange implements objstore.Bucket. Chunk files are cached in aligned
// sub-ranges, so overlapping queries share cached bytes; missing sub-ranges
// are fetched in at most MaxChunksGetRangeRequests requests.
func (cb *CachingBucket) GetRange(ctx context.Context, name string, off, length int64) (io.ReadCloser, error) {
	if !isChunkFile(name) || off < 0 || length <= 0 {
		return cb.Bucket.GetRange(ctx, name, off, length)
	}
	attrs, err := cb.chunkAttrs(ctx, name)
	if err != nil {
		return nil, fmt.Errorf("attributes of %s: %w", name, err)
	}
	size := attrs.Size
	end := min(off+length, size)
	if off >= end {
		return io.NopCloser(bytes.NewReader(nil)), nil
	}
	sub := cb.cfg.ChunkSubrangeSize
	first := off / sub * sub
	type piece struct {
		start, end int64
		data       []byte
	}
	var pieces []piece
	var keys []string
	for s := first; s < end; s += sub {
		e := min(s+sub, size)
		pieces = append(pieces, piece{start: s, end: e})
		keys = append(keys, subrangeKey(name, s, e))
	}
	got := cb.cache.Fetch(ctx, keys)
	var missing []int
	for i := range pieces {
		if v, ok := got[keys[i]]; ok && int64(len(v)) == pieces[i].end-pieces[i].start {
			pieces[i].data = v
			cb.fetchedFrom.WithLabelValues("cache").Add(float64(len(v)))
		} else {
			missing = append(missing, i)
		}
	}
	cb.requests.WithLabelValues(opGetRange, "chunks").Add(float64(len(pieces)))
	cb.hits.WithLabelValues(opGetRange, "chunks").Add(float64(len(pieces) - len(missing)))

	if len(missing) > 0 {
		// Group missing sub-ranges into runs of consecutive ones; merge runs
		// (fetching cached bytes again) when there are too many requests.
		var runs [][2]int
		for _, i := range missing {
			if n := len(runs); n > 0 && runs[n-1][1] == i-1 {
				runs[n-1][1] = i
			} else {
				runs = append(runs, [2]int{i, i})
			}
		}
		if m := cb.cfg.MaxChunksGetRangeRequests; m > 0 && len(runs) > m {
			runs = [][2]int{{runs[0][0], runs[len(runs)-1][1]}}
		}
		store := map[string][]byte{}
		for _, r := range runs {
			s, e := pieces[r[0]].start, pieces[r[1]].end
			rc, err := cb.Bucket.GetRange(ctx, name, s, e-s)
			if err != nil {
				return nil, err
			}
			buf := make([]byte, e-s)
			_, err = io.ReadFull(rc, buf)
			_ = rc.Close()
			if err != nil {
				return nil, fmt.Errorf("read range of %s: %w", name, err)
			}
			cb.fetchedFrom.WithLabelValues("bucket").Add(float64(len(buf)))
			for i := r[0]; i <= r[1]; i++ {
				p := &pieces[i]
				d := buf[p.start-s : p.end-s]
				if p.data == nil {
					store[keys[i]] = d
				}
				p.data = d
			}
		}
		cb.cache.Store(store, cb.cfg.ChunkSubrangeTTL)
	}

	out := make([]byte, 0, end-off)
	for _, p := range pieces {
		lo := max(off, p.start) - p.start
		hi := min(end, p.end) - p.start
		out = append(out, p.data[lo:hi]...)
	}
	return io.NopCloser(bytes.NewReader(out)), nil
}
