package cache

import (
	"context"
	"strconv"
	"time"

	"github.com/oklog/ulid/v2"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/storage"
)

// Index cache item types (the item_type label of the metrics, as in Thanos).
const (
	ItemPostings = "Postings"
	ItemSeries   = "Series"
)

// IndexCache caches raw postings lists and series entries of block indexes,
// the two things a query reads from the index in object storage.
type IndexCache struct {
	backend  Cache
	ttl      time.Duration
	postings bool
	series   bool

	requests *prometheus.CounterVec
	hits     *prometheus.CounterVec
}

// NewIndexCache returns an index cache on backend. enabled lists the item
// types to cache (all when empty).
func NewIndexCache(backend Cache, ttl time.Duration, enabled []string, reg prometheus.Registerer) *IndexCache {
	c := &IndexCache{
		backend: backend, ttl: ttl, postings: len(enabled) == 0, series: len(enabled) == 0,
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "thanos_store_index_cache_requests_total", Help: "Total number of items requests to the cache.",
		}, []string{"item_type"}),
		hits: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "thanos_store_index_cache_hits_total", Help: "Total number of items requests to the cache that were a hit.",
		}, []string{"item_type"}),
	}
	for _, e := range enabled {
		switch e {
		case ItemPostings:
			c.postings = true
		case ItemSeries:
			c.series = true
		}
	}
	if reg != nil {
		reg.MustRegister(c.requests, c.hits)
	}
	for _, t := range []string{ItemPostings, ItemSeries} {
		c.requests.WithLabelValues(t)
		c.hits.WithLabelValues(t)
	}
	return c
}

func postingsKey(id ulid.ULID, l labels.Label) string {
	return "P:" + id.String() + ":" + l.Name + ":" + l.Value
}

// seriesKeyPrefix is the part of the series keys shared by a block's series;
// it is built once per call rather than once per series.
func seriesKeyPrefix(id ulid.ULID) string { return "S:" + id.String() + ":" }

// seriesKey returns the key of series ref of the block of prefix, in one
// allocation (buf is scratch space, returned for reuse).
func seriesKey(prefix string, buf []byte, ref storage.SeriesRef) ([]byte, string) {
	buf = strconv.AppendUint(append(buf[:0], prefix...), uint64(ref), 10)
	return buf, string(buf)
}

// FetchPostings returns the cached postings of keys and the keys missed.
func (c *IndexCache) FetchPostings(ctx context.Context, id ulid.ULID, keys []labels.Label) (map[labels.Label][]byte, []labels.Label) {
	if c == nil || !c.postings {
		return nil, keys
	}
	ks := make([]string, len(keys))
	for i, k := range keys {
		ks[i] = postingsKey(id, k)
	}
	got := c.backend.Fetch(ctx, ks)
	hits := make(map[labels.Label][]byte, len(got))
	var misses []labels.Label
	for i, k := range keys {
		if v, ok := got[ks[i]]; ok {
			hits[k] = v
		} else {
			misses = append(misses, k)
		}
	}
	c.requests.WithLabelValues(ItemPostings).Add(float64(len(keys)))
	c.hits.WithLabelValues(ItemPostings).Add(float64(len(hits)))
	return hits, misses
}

// StorePostings caches the raw postings list of l.
func (c *IndexCache) StorePostings(id ulid.ULID, l labels.Label, v []byte) {
	if c == nil || !c.postings {
		return
	}
	c.backend.Store(map[string][]byte{postingsKey(id, l): v}, c.ttl)
}

// FetchSeries returns the cached series entries of refs and the refs missed.
func (c *IndexCache) FetchSeries(ctx context.Context, id ulid.ULID, refs []storage.SeriesRef) (map[storage.SeriesRef][]byte, []storage.SeriesRef) {
	if c == nil || !c.series {
		return nil, refs
	}
	ks := make([]string, len(refs))
	prefix := seriesKeyPrefix(id)
	var buf []byte
	for i, r := range refs {
		buf, ks[i] = seriesKey(prefix, buf, r)
	}
	got := c.backend.Fetch(ctx, ks)
	hits := make(map[storage.SeriesRef][]byte, len(got))
	var misses []storage.SeriesRef
	for i, r := range refs {
		if v, ok := got[ks[i]]; ok {
			hits[r] = v
		} else {
			misses = append(misses, r)
		}
	}
	c.requests.WithLabelValues(ItemSeries).Add(float64(len(refs)))
	c.hits.WithLabelValues(ItemSeries).Add(float64(len(hits)))
	return hits, misses
}

// StoreSeries caches series entries.
func (c *IndexCache) StoreSeries(id ulid.ULID, entries map[storage.SeriesRef][]byte) {
	if c == nil || !c.series || len(entries) == 0 {
		return
	}
	items := make(map[string][]byte, len(entries))
	prefix := seriesKeyPrefix(id)
	var (
		buf []byte
		k   string
	)
	for r, v := range entries {
		buf, k = seriesKey(prefix, buf, r)
		items[k] = v
	}
	c.backend.Store(items, c.ttl)
}
