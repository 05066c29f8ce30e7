package cache

import (
	"fmt"
	"strings"
	"time"

	"github.com/alecthomas/units"
	"github.com/go-logr/logr"
	"github.com/prometheus/client_golang/prometheus"
	"go.yaml.in/yaml/v2"
)

// Bytes is a size in bytes written as in Thanos configs ("250MB", "1GiB", 1024).
type Bytes uint64

// UnmarshalYAML implements yaml.Unmarshaler.
func (b *Bytes) UnmarshalYAML(unmarshal func(any) error) error {
	var s string
	if err := unmarshal(&s); err != nil {
		return err
	}
	v, err := units.ParseBase2Bytes(s)
	if err != nil {
		var n uint64
		if _, err2 := fmt.Sscan(s, &n); err2 != nil {
			return fmt.Errorf("invalid size %q: %w", s, err)
		}
		v = units.Base2Bytes(n)
	}
	*b = Bytes(v)
	return nil
}

// Backend types, as Thanos names them.
const (
	TypeInMemory  = "IN-MEMORY"
	TypeMemcached = "MEMCACHED"
)

// InMemoryConfig configures the in-memory LRU.
type InMemoryConfig struct {
	MaxSize     Bytes `yaml:"max_size"`
	MaxItemSize Bytes `yaml:"max_item_size"`
	// Thanos's in-memory bucket cache knows these; accepted and ignored.
	MaxSizeItems int           `yaml:"max_size_items"`
	Validity     time.Duration `yaml:"validity"`
}

// IndexCacheConfig is --index-cache.config.
type IndexCacheConfig struct {
	Type         string        `yaml:"type"`
	Config       any           `yaml:"config"`
	EnabledItems []string      `yaml:"enabled_items"`
	TTL          time.Duration `yaml:"ttl"`
}

// BucketCacheConfig is --store.caching-bucket.config.
type BucketCacheConfig struct {
	Type                      string        `yaml:"type"`
	Config                    any           `yaml:"config"`
	ChunkSubrangeSize         int64         `yaml:"chunk_subrange_size"`
	MaxChunksGetRangeRequests int           `yaml:"max_chunks_get_range_requests"`
	MetafileMaxSize           Bytes         `yaml:"metafile_max_size"`
	ChunkObjectAttrsTTL       time.Duration `yaml:"chunk_object_attrs_ttl"`
	ChunkSubrangeTTL          time.Duration `yaml:"chunk_subrange_ttl"`
	BlocksIterTTL             time.Duration `yaml:"blocks_iter_ttl"`
	MetafileExistsTTL         time.Duration `yaml:"metafile_exists_ttl"`
	MetafileDoesntExistTTL    time.Duration `yaml:"metafile_doesnt_exist_ttl"`
	MetafileContentTTL        time.Duration `yaml:"metafile_content_ttl"`
}

func (c *BucketCacheConfig) defaults() {
	c.ChunkSubrangeSize = 16000
	c.MaxChunksGetRangeRequests = 3
	c.MetafileMaxSize = 1 << 20
	c.ChunkObjectAttrsTTL = 24 * time.Hour
	c.ChunkSubrangeTTL = 24 * time.Hour
	c.BlocksIterTTL = 5 * time.Minute
	c.MetafileExistsTTL = 2 * time.Hour
	c.MetafileDoesntExistTTL = 15 * time.Minute
	c.MetafileContentTTL = 24 * time.Hour
}

// ParseIndexCacheConfig parses and validates --index-cache.config.
func ParseIndexCacheConfig(b []byte) (*IndexCacheConfig, error) {
	var c IndexCacheConfig
	if err := yaml.UnmarshalStrict(b, &c); err != nil {
		return nil, fmt.Errorf("parse index cache config: %w", err)
	}
	for _, it := range c.EnabledItems {
		switch it {
		case ItemPostings, ItemSeries, "ExpandedPostings":
		default:
			return nil, fmt.Errorf("index cache config: unknown enabled_items entry %q (Postings, Series, ExpandedPostings)", it)
		}
	}
	if c.TTL == 0 {
		c.TTL = 24 * time.Hour
	}
	if err := checkType(c.Type); err != nil {
		return nil, fmt.Errorf("index cache config: %w", err)
	}
	return &c, nil
}

// ParseBucketCacheConfig parses and validates --store.caching-bucket.config.
func ParseBucketCacheConfig(b []byte) (*BucketCacheConfig, error) {
	var c BucketCacheConfig
	c.defaults()
	if err := yaml.UnmarshalStrict(b, &c); err != nil {
		return nil, fmt.Errorf("parse caching bucket config: %w", err)
	}
	if err := checkType(c.Type); err != nil {
		return nil, fmt.Errorf("caching bucket config: %w", err)
	}
	if c.ChunkSubrangeSize <= 0 {
		return nil, fmt.Errorf("caching bucket config: chunk_subrange_size must be positive, got %d", c.ChunkSubrangeSize)
	}
	return &c, nil
}

func checkType(t string) error {
	switch strings.ToUpper(t) {
	case TypeInMemory, TypeMemcached:
		return nil
	case "":
		return fmt.Errorf("type is required (%s or %s)", TypeInMemory, TypeMemcached)
	}
	return fmt.Errorf("unsupported cache type %q (%s or %s)", t, TypeInMemory, TypeMemcached)
}

// newBackend builds the backend named by typ from its config block.
func newBackend(name, typ string, cfg any, defaultMaxSize int64, logger logr.Logger, reg prometheus.Registerer) (Cache, error) {
	raw, err := yaml.Marshal(cfg)
	if err != nil {
		return nil, fmt.Errorf("marshal %s backend config: %w", name, err)
	}
	switch strings.ToUpper(typ) {
	case TypeInMemory:
		c := InMemoryConfig{MaxSize: Bytes(defaultMaxSize)}
		if cfg != nil {
			if err := yaml.Unmarshal(raw, &c); err != nil {
				return nil, fmt.Errorf("parse %s in-memory config: %w", name, err)
			}
		}
		if c.MaxItemSize == 0 {
			// Unset: half the default size, but never more than half of a
			// smaller max_size, so `max_size: 64MiB` alone is a valid cache.
			c.MaxItemSize = Bytes(min(defaultMaxSize, int64(c.MaxSize)) / 2)
		}
		if c.MaxItemSize > c.MaxSize {
			return nil, fmt.Errorf("%s: max_item_size %d is larger than max_size %d", name, c.MaxItemSize, c.MaxSize)
		}
		return NewInMemory(name, int64(c.MaxSize), int64(c.MaxItemSize), reg), nil
	case TypeMemcached:
		var c MemcachedConfig
		if err := yaml.UnmarshalStrict(raw, &c); err != nil {
			return nil, fmt.Errorf("parse %s memcached config: %w", name, err)
		}
		return NewMemcached(name, logger, c, reg)
	}
	return nil, fmt.Errorf("unsupported cache type %q", typ)
}

// NewIndexCacheFromConfig builds the index cache described by c.
func NewIndexCacheFromConfig(c *IndexCacheConfig, logger logr.Logger, reg prometheus.Registerer) (*IndexCache, error) {
	b, err := newBackend("index-cache", c.Type, c.Config, 250<<20, logger, reg)
	if err != nil {
		return nil, err
	}
	return NewIndexCache(b, c.TTL, c.EnabledItems, reg), nil
}
