// Package cache holds the store gateway's caches: a generic byte cache with
// an in-memory LRU and a memcached backend, the index cache (postings and
// series entries) built on it, and a caching bucket for chunk sub-ranges,
// meta.json files and the block listing. Configuration is Thanos's YAML.
package cache

import (
	"container/list"
	"context"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Cache is a byte cache keyed by strings. Stores are best effort.
type Cache interface {
	// Store saves items for ttl (ignored by the in-memory backend).
	Store(items map[string][]byte, ttl time.Duration)
	// Fetch returns the items found; missing keys are absent from the map.
	Fetch(ctx context.Context, keys []string) map[string][]byte
	Name() string
}

// InMemory is an LRU cache bounded by the total size of keys and values.
type InMemory struct {
	name        string
	maxSize     int64
	maxItemSize int64

	mu    sync.Mutex
	size  int64
	ll    *list.List
	items map[string]*list.Element

	evicted   prometheus.Counter
	sizeBytes prometheus.GaugeFunc
	itemsG    prometheus.GaugeFunc
}

type entry struct {
	key string
	val []byte
}

// NewInMemory returns an LRU cache of at most maxSize bytes whose items are
// at most maxItemSize bytes each.
func NewInMemory(name string, maxSize, maxItemSize int64, reg prometheus.Registerer) *InMemory {
	c := &InMemory{name: name, maxSize: maxSize, maxItemSize: maxItemSize, ll: list.New(), items: map[string]*list.Element{}}
	labels := prometheus.Labels{"name": name}
	c.evicted = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "thanos_cache_inmemory_items_evicted_total", Help: "Total number of items evicted from the in-memory cache.", ConstLabels: labels,
	})
	c.sizeBytes = prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "thanos_cache_inmemory_items_size_bytes", Help: "Current size of items in the in-memory cache in bytes.", ConstLabels: labels,
	}, func() float64 { c.mu.Lock(); defer c.mu.Unlock(); return float64(c.size) })
	c.itemsG = prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "thanos_cache_inmemory_items", Help: "Current number of items in the in-memory cache.", ConstLabels: labels,
	}, func() float64 { c.mu.Lock(); defer c.mu.Unlock(); return float64(c.ll.Len()) })
	if reg != nil {
		reg.MustRegister(c.evicted, c.sizeBytes, c.itemsG)
	}
	return c
}

// Name implements Cache.
func (c *InMemory) Name() string { return c.name }

func itemSize(k string, v []byte) int64 { return int64(len(k) + len(v) + 64) }

// Store implements Cache.
func (c *InMemory) Store(items map[string][]byte, _ time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for k, v := range items {
		sz := itemSize(k, v)
		if sz > c.maxItemSize || sz > c.maxSize {
			continue
		}
		if e, ok := c.items[k]; ok {
			old := e.Value.(*entry)
			c.size += sz - itemSize(old.key, old.val)
			old.val = v
			c.ll.MoveToFront(e)
		} else {
			c.items[k] = c.ll.PushFront(&entry{key: k, val: v})
			c.size += sz
		}
		for c.size > c.maxSize {
			e := c.ll.Back()
			old := e.Value.(*entry)
			c.ll.Remove(e)
			delete(c.items, old.key)
			c.size -= itemSize(old.key, old.val)
			c.evicted.Inc()
		}
	}
}

// Fetch implements Cache.
func (c *InMemory) Fetch(_ context.Context, keys []string) map[string][]byte {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := map[string][]byte{}
	for _, k := range keys {
		if e, ok := c.items[k]; ok {
			c.ll.MoveToFront(e)
			out[k] = e.Value.(*entry).val
		}
	}
	return out
}
