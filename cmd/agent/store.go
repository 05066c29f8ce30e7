package main

import (
	"context"
	"errors"
	"fmt"
	"io"

	"github.com/alecthomas/units"

	"github.com/stevedore-dev/stevedore/internal/server"
	"github.com/stevedore-dev/stevedore/internal/storegw"
	"github.com/stevedore-dev/stevedore/internal/storegw/cache"
	"github.com/stevedore-dev/stevedore/internal/storegw/fetcher"
	"github.com/stevedore-dev/stevedore/internal/version"
)

type storeFlags struct {
	minTime, maxTime, indexCacheSize string
	chunkDiskCacheSize               string
	relabel, indexCache, cachingBkt  contentFlag
	sampleLimit, touchedLimit        uint64
}

func runStore(ctx context.Context, args []string, stderr io.Writer) error {
	fs := newFlagSet("store", stderr)
	var (
		common commonFlags
		obj    contentFlag
		sf     storeFlags
		cfg    = storegw.DefaultConfig()
	)
	common.register(fs)
	obj.registerObjstore(fs)
	fs.StringVar(&cfg.DataDir, "data-dir", cfg.DataDir, "Local directory for index-headers and cached metas.")
	fs.DurationVar(&cfg.SyncInterval, "sync-block-duration", cfg.SyncInterval, "Interval between bucket syncs.")
	fs.IntVar(&cfg.BlockSyncConcurrency, "block-sync-concurrency", cfg.BlockSyncConcurrency, "Number of blocks loaded (index-headers built) concurrently.")
	fs.IntVar(&cfg.BlockMetaFetchConcurrency, "block-meta-fetch-concurrency", cfg.BlockMetaFetchConcurrency, "Number of meta.json files fetched concurrently.")
	fs.StringVar(&sf.minTime, "min-time", "0000-01-01T00:00:00Z", "Serve only blocks and data after this time: RFC3339 or a duration relative to now, like -2w.")
	fs.StringVar(&sf.maxTime, "max-time", "9999-12-31T23:59:59Z", "Serve only blocks and data before this time: RFC3339 or a duration relative to now, like -2h.")
	sf.relabel.register(fs, "selector.relabel-config", "relabel configs applied to block external labels and __block_id (keep, drop, hashmod for sharding)")
	fs.DurationVar(&cfg.ConsistencyDelay, "consistency-delay", 0, "Minimum age of a block (by upload time) before it is served.")
	fs.DurationVar(&cfg.IgnoreDeletionMarksDelay, "ignore-deletion-marks-delay", cfg.IgnoreDeletionMarksDelay, "Stop serving a block this long after it was marked for deletion.")
	sf.indexCache.register(fs, "index-cache.config", "the index cache configuration (Thanos format: type IN-MEMORY or MEMCACHED, config)")
	fs.StringVar(&sf.indexCacheSize, "index-cache-size", "250MB", "Size of the in-memory index cache used when --index-cache.config is not given.")
	fs.StringVar(&sf.chunkDiskCacheSize, "store.chunk-disk-cache-size", "4GiB", "Most chunk data kept on local disk under --data-dir, so that repeated heavy queries do not fetch it again; 0 disables.")
	sf.cachingBkt.register(fs, "store.caching-bucket.config", "the caching bucket configuration (Thanos format: type IN-MEMORY or MEMCACHED, config, TTLs)")
	fs.Uint64Var(&sf.sampleLimit, "store.grpc.series-sample-limit", 0, "Most samples one Series call may return; 0 is unlimited.")
	fs.Uint64Var(&sf.touchedLimit, "store.grpc.touched-series-limit", 0, "Most series one Series call may touch; 0 is unlimited.")
	fs.IntVar(&cfg.Limits.MaxConcurrency, "store.grpc.series-max-concurrency", cfg.Limits.MaxConcurrency, "Most Series calls served at once; others wait.")
	fs.BoolVar(&cfg.LazyIndexHeader, "store.enable-index-header-lazy-reader", false, "Open index-headers on first use and close them when idle.")
	fs.DurationVar(&cfg.LazyIndexHeaderIdleTimeout, "store.index-header-lazy-reader-idle-timeout", cfg.LazyIndexHeaderIdleTimeout, "Idle time after which a lazily opened index-header is closed.")
	fs.IntVar(&cfg.PostingOffsetsInMemSampling, "store.index-header-posting-offsets-in-mem-sampling", cfg.PostingOffsetsInMemSampling, "Keep every n-th postings offset of an index-header in memory.")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if common.showVersion {
		_, _ = fmt.Fprintf(stderr, "agent %s\n", version.Get())
		return nil
	}
	if err := sf.apply(&cfg); err != nil {
		return usageError{err}
	}
	var err error
	if cfg.ObjstoreConfig, err = obj.load(); err != nil {
		return usageError{err}
	}
	logger, reg, err := newRuntime(&common, stderr, "store")
	if err != nil {
		return err
	}
	g, err := storegw.New(logger, reg, cfg)
	if err != nil {
		return usageError{err}
	}
	return serve(ctx, logger, reg, &common, server.NewProber(), g)
}

// apply parses the flags that need more than the flag package into cfg.
func (sf *storeFlags) apply(cfg *storegw.Config) error {
	var err error
	if cfg.MinTime, err = fetcher.ParseTimeOrDuration(sf.minTime); err != nil {
		return fmt.Errorf("--min-time: %w", err)
	}
	if cfg.MaxTime, err = fetcher.ParseTimeOrDuration(sf.maxTime); err != nil {
		return fmt.Errorf("--max-time: %w", err)
	}
	if b, err := sf.relabel.load(); err != nil {
		return err
	} else if len(b) > 0 {
		if cfg.SelectorRelabel, err = fetcher.ParseRelabelConfig(b); err != nil {
			return fmt.Errorf("--selector.relabel-config: %w", err)
		}
	}
	if b, err := sf.indexCache.load(); err != nil {
		return err
	} else if len(b) > 0 {
		if cfg.IndexCache, err = cache.ParseIndexCacheConfig(b); err != nil {
			return fmt.Errorf("--index-cache.config: %w", err)
		}
	}
	size, err := units.ParseBase2Bytes(sf.indexCacheSize)
	if err != nil {
		return fmt.Errorf("--index-cache-size: %w", err)
	}
	cfg.IndexCacheSize = int64(size)
	dsize, err := units.ParseBase2Bytes(sf.chunkDiskCacheSize)
	if err != nil {
		return fmt.Errorf("--store.chunk-disk-cache-size: %w", err)
	}
	cfg.ChunkDiskCacheSize = int64(dsize)
	if b, err := sf.cachingBkt.load(); err != nil {
		return err
	} else if len(b) > 0 {
		if cfg.CachingBucket, err = cache.ParseBucketCacheConfig(b); err != nil {
			return fmt.Errorf("--store.caching-bucket.config: %w", err)
		}
	}
	cfg.Limits.SeriesSampleLimit = sf.sampleLimit
	cfg.Limits.TouchedSeriesLimit = sf.touchedLimit
	if cfg.SyncInterval <= 0 {
		return errors.New("--sync-block-duration must be positive")
	}
	return nil
}
