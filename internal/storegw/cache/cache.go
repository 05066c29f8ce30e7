// Package cache holds the store gateway's caches: a generic byte cache with
// an in-memory LRU and a memcached backend, the index cache (postings and
// series entries) built on it, and a caching bucket for chunk sub-ranges,
// meta.json files and the block listing. Configuration is Thanos's YAML.
package cache

import (
	"bytes"
	"context"
	"encoding/binary"
	"sync"
	"time"

	"github.com/cespare/xxhash/v2"
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

// InMemory is a cache bounded in bytes that keeps its items in a few large
// byte rings instead of as objects of their own. A store gateway's index
// cache holds millions of small series entries: as separate objects (list
// element, map entry, key, value) their pointers made every garbage
// collection scan them all, which cost a heavy query more CPU than fetching
// and sending its data. The rings and the hash index hold no pointers.
//
// Eviction is oldest first, with a twist that keeps hot items: an item
// fetched while in the older half of its ring is copied to the head.
type InMemory struct {
	name        string
	maxItemSize int64
	shards      []*ringShard

	evicted   prometheus.Counter
	sizeBytes prometheus.GaugeFunc
	itemsG    prometheus.GaugeFunc
}

// ringShardTarget is the size of one ring: enough shards for concurrent
// queries not to queue on one lock, few enough for large items to fit.
const ringShardTarget = 32 << 20

// ringItemHeader is the key length and value length before each item.
const ringItemHeader = 8

type ringShard struct {
	mu   sync.Mutex
	size uint64
	buf  []byte // allocated on first store
	// head is the absolute offset of the next write; the ring position of
	// absolute offset o is o % size. An item at o is intact while head <= o+size.
	head      uint64
	index     map[uint64]uint64 // key hash → absolute offset of the item
	nextSweep uint64
}

// NewInMemory returns a cache of at most maxSize bytes (keys, values and an
// 8-byte header each) whose items are at most maxItemSize bytes each.
func NewInMemory(name string, maxSize, maxItemSize int64, reg prometheus.Registerer) *InMemory {
	c := &InMemory{name: name, maxItemSize: maxItemSize}
	if maxSize > 0 {
		n := min(max(maxSize/ringShardTarget, 1), 16)
		for range n {
			c.shards = append(c.shards, &ringShard{size: uint64(maxSize / n), index: map[uint64]uint64{}})
		}
	}
	labels := prometheus.Labels{"name": name}
	c.evicted = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "thanos_cache_inmemory_items_evicted_total", Help: "Total number of items evicted from the in-memory cache.", ConstLabels: labels,
	})
	c.sizeBytes = prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "thanos_cache_inmemory_items_size_bytes", Help: "Current size of items in the in-memory cache in bytes.", ConstLabels: labels,
	}, func() float64 {
		var n uint64
		for _, s := range c.shards {
			s.mu.Lock()
			n += min(s.head, s.size)
			s.mu.Unlock()
		}
		return float64(n)
	})
	c.itemsG = prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "thanos_cache_inmemory_items", Help: "Current number of items in the in-memory cache.", ConstLabels: labels,
	}, func() float64 {
		n := 0
		for _, s := range c.shards {
			s.mu.Lock()
			n += len(s.index)
			s.mu.Unlock()
		}
		return float64(n)
	})
	if reg != nil {
		reg.MustRegister(c.evicted, c.sizeBytes, c.itemsG)
	}
	return c
}

// Name implements Cache.
func (c *InMemory) Name() string { return c.name }

func (c *InMemory) shard(h uint64) *ringShard { return c.shards[h%uint64(len(c.shards))] }

// Store implements Cache.
func (c *InMemory) Store(items map[string][]byte, _ time.Duration) {
	if len(c.shards) == 0 {
		return
	}
	for k, v := range items {
		if int64(len(k)+len(v)) > c.maxItemSize {
			continue
		}
		h := xxhash.Sum64String(k)
		s := c.shard(h)
		s.mu.Lock()
		c.evicted.Add(float64(s.store(h, k, v)))
		s.mu.Unlock()
	}
}

// Fetch implements Cache. Values are copies: the rings are overwritten.
func (c *InMemory) Fetch(_ context.Context, keys []string) map[string][]byte {
	out := map[string][]byte{}
	if len(c.shards) == 0 {
		return out
	}
	for _, k := range keys {
		h := xxhash.Sum64String(k)
		s := c.shard(h)
		s.mu.Lock()
		v, evicted := s.fetch(h, k)
		s.mu.Unlock()
		c.evicted.Add(float64(evicted))
		if v != nil {
			out[k] = v
		}
	}
	return out
}

// store writes an item at the head and returns how many items it evicted
// from the index. Items over half the ring are not cached.
func (s *ringShard) store(h uint64, k string, v []byte) (evicted int) {
	n := uint64(ringItemHeader + len(k) + len(v))
	if n > s.size/2 {
		return 0
	}
	if s.buf == nil {
		// Pages of a fresh allocation are not resident until written: the
		// ring costs memory as it fills.
		s.buf = make([]byte, s.size)
		s.nextSweep = s.size
	}
	pos := s.head % s.size
	if pos+n > s.size {
		// Items do not wrap: skip the end of the ring.
		s.head += s.size - pos
		pos = 0
	}
	binary.LittleEndian.PutUint32(s.buf[pos:], uint32(len(k)))
	binary.LittleEndian.PutUint32(s.buf[pos+4:], uint32(len(v)))
	copy(s.buf[pos+ringItemHeader:], k)
	copy(s.buf[pos+ringItemHeader+uint64(len(k)):], v)
	s.index[h] = s.head
	s.head += n
	if s.head >= s.nextSweep {
		// Drop index entries of overwritten items, a quarter ring at a time,
		// so the index does not grow with everything ever stored.
		for kh, off := range s.index {
			if off+s.size < s.head {
				delete(s.index, kh)
				evicted++
			}
		}
		s.nextSweep = s.head + s.size/4
	}
	return evicted
}

func (s *ringShard) fetch(h uint64, k string) (v []byte, evicted int) {
	off, ok := s.index[h]
	if !ok {
		return nil, 0
	}
	if off+s.size < s.head {
		delete(s.index, h)
		return nil, 1
	}
	pos := off % s.size
	kl := uint64(binary.LittleEndian.Uint32(s.buf[pos:]))
	vl := uint64(binary.LittleEndian.Uint32(s.buf[pos+4:]))
	key := s.buf[pos+ringItemHeader : pos+ringItemHeader+kl]
	if string(key) != k {
		return nil, 0 // Another key with the same hash.
	}
	v = bytes.Clone(s.buf[pos+ringItemHeader+kl : pos+ringItemHeader+kl+vl])
	if v == nil {
		v = []byte{}
	}
	if s.head-off > s.size/2 {
		evicted = s.store(h, k, v)
	}
	return v, evicted
}
