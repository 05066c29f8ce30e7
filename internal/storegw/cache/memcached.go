package cache

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"time"

	"github.com/bradfitz/gomemcache/memcache"
	"github.com/go-logr/logr"
	"github.com/prometheus/client_golang/prometheus"
)

// MemcachedConfig is Thanos's memcached client configuration; fields we do
// not need are accepted so that Thanos configs load unchanged.
type MemcachedConfig struct {
	Addresses                 []string      `yaml:"addresses"`
	Timeout                   time.Duration `yaml:"timeout"`
	MaxIdleConnections        int           `yaml:"max_idle_connections"`
	MaxAsyncConcurrency       int           `yaml:"max_async_concurrency"`
	MaxAsyncBufferSize        int           `yaml:"max_async_buffer_size"`
	MaxGetMultiConcurrency    int           `yaml:"max_get_multi_concurrency"`
	MaxItemSize               Bytes         `yaml:"max_item_size"`
	MaxGetMultiBatchSize      int           `yaml:"max_get_multi_batch_size"`
	DNSProviderUpdateInterval time.Duration `yaml:"dns_provider_update_interval"`
	AutoDiscovery             bool          `yaml:"auto_discovery"`
	SetAsyncCircuitBreaker    any           `yaml:"set_async_circuit_breaker_config"`
}

func (c *MemcachedConfig) defaults() {
	if c.Timeout == 0 {
		c.Timeout = 500 * time.Millisecond
	}
	if c.MaxIdleConnections == 0 {
		c.MaxIdleConnections = 100
	}
	if c.MaxAsyncConcurrency == 0 {
		c.MaxAsyncConcurrency = 20
	}
	if c.MaxAsyncBufferSize == 0 {
		c.MaxAsyncBufferSize = 10000
	}
	if c.MaxItemSize == 0 {
		c.MaxItemSize = 1 << 20
	}
	if c.MaxGetMultiBatchSize == 0 {
		c.MaxGetMultiBatchSize = 100
	}
}

func (c *MemcachedConfig) validate() error {
	if len(c.Addresses) == 0 {
		return errors.New("memcached: no addresses configured")
	}
	return nil
}

// Memcached is a Cache backed by memcached. Stores are asynchronous and
// dropped when the queue is full, so a slow memcached never slows queries.
type Memcached struct {
	name   string
	logger logr.Logger
	client *memcache.Client
	cfg    MemcachedConfig
	queue  chan *memcache.Item

	failures *prometheus.CounterVec
	skipped  prometheus.Counter
}

// NewMemcached connects lazily to the configured servers.
func NewMemcached(name string, logger logr.Logger, cfg MemcachedConfig, reg prometheus.Registerer) (*Memcached, error) {
	cfg.defaults()
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	client := memcache.New(cfg.Addresses...)
	client.Timeout = cfg.Timeout
	client.MaxIdleConns = cfg.MaxIdleConnections
	m := &Memcached{
		name: name, logger: logger, client: client, cfg: cfg,
		queue: make(chan *memcache.Item, cfg.MaxAsyncBufferSize),
		failures: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "thanos_memcached_operation_failures_total", Help: "Total number of operations against memcached that failed.",
			ConstLabels: prometheus.Labels{"name": name},
		}, []string{"operation"}),
		skipped: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "thanos_memcached_operation_skipped_total", Help: "Total number of operations against memcached that have been skipped.",
			ConstLabels: prometheus.Labels{"name": name, "operation": "set", "reason": "queue-full"},
		}),
	}
	if reg != nil {
		reg.MustRegister(m.failures, m.skipped)
	}
	for range cfg.MaxAsyncConcurrency {
		go m.setLoop()
	}
	return m, nil
}

func (m *Memcached) setLoop() {
	for it := range m.queue {
		if err := m.client.Set(it); err != nil {
			m.failures.WithLabelValues("set").Inc()
		}
	}
}

// Name implements Cache.
func (m *Memcached) Name() string { return m.name }

// key maps cache keys to memcached's 250-byte, no-whitespace keys.
func key(k string) string {
	if len(k) <= 200 && isSafeKey(k) {
		return "sv:" + k
	}
	h := sha256.Sum256([]byte(k))
	return "svh:" + hex.EncodeToString(h[:])
}

func isSafeKey(k string) bool {
	for i := 0; i < len(k); i++ {
		if k[i] <= ' ' || k[i] == 0x7f {
			return false
		}
	}
	return true
}

// Store implements Cache.
func (m *Memcached) Store(items map[string][]byte, ttl time.Duration) {
	for k, v := range items {
		if int64(len(v)) > int64(m.cfg.MaxItemSize) {
			continue
		}
		it := &memcache.Item{Key: key(k), Value: v, Expiration: int32(ttl.Seconds())}
		select {
		case m.queue <- it:
		default:
			m.skipped.Inc()
		}
	}
}

// Fetch implements Cache.
func (m *Memcached) Fetch(ctx context.Context, keys []string) map[string][]byte {
	out := map[string][]byte{}
	batch := m.cfg.MaxGetMultiBatchSize
	for start := 0; start < len(keys); start += batch {
		if ctx.Err() != nil {
			return out
		}
		end := min(start+batch, len(keys))
		mk := make([]string, 0, end-start)
		back := make(map[string]string, end-start)
		for _, k := range keys[start:end] {
			kk := key(k)
			mk = append(mk, kk)
			back[kk] = k
		}
		items, err := m.client.GetMulti(mk)
		if err != nil {
			m.failures.WithLabelValues("getmulti").Inc()
			m.logger.V(1).Info("memcached get failed", "err", err)
			continue
		}
		for kk, it := range items {
			out[back[kk]] = it.Value
		}
	}
	return out
}

// Ping checks that memcached answers.
func (m *Memcached) Ping() error {
	if err := m.client.Ping(); err != nil {
		return fmt.Errorf("ping memcached %v: %w", m.cfg.Addresses, err)
	}
	return nil
}
