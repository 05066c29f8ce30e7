// Package storegw is the agent mode that serves the blocks of an object
// storage bucket over the Thanos StoreAPI (a store gateway). It wires the
// meta fetcher and its filters, caches, the bucket store and the HTTP API.
package storegw

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"path/filepath"
	"time"

	"github.com/go-logr/logr"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/prometheus/model/relabel"
	"github.com/thanos-io/objstore"
	"github.com/thanos-io/objstore/client"
	"google.golang.org/grpc"

	"github.com/stevedore-dev/stevedore/internal/agentstatus"
	"github.com/stevedore-dev/stevedore/internal/block"
	"github.com/stevedore-dev/stevedore/internal/infopb"
	"github.com/stevedore-dev/stevedore/internal/server"
	"github.com/stevedore-dev/stevedore/internal/storegw/bucketstore"
	"github.com/stevedore-dev/stevedore/internal/storegw/cache"
	"github.com/stevedore-dev/stevedore/internal/storegw/fetcher"
	"github.com/stevedore-dev/stevedore/internal/storepb"
)

// Config is the validated configuration of the store gateway. Flags are
// parsed into it at the edge (cmd/agent); New validates it once more.
type Config struct {
	// ObjstoreConfig is the objstore YAML.
	ObjstoreConfig []byte
	// Bucket, when set, is used instead of ObjstoreConfig (tests, embedding).
	Bucket objstore.Bucket

	DataDir                   string
	SyncInterval              time.Duration
	BlockSyncConcurrency      int
	BlockMetaFetchConcurrency int
	MinTime, MaxTime          fetcher.TimeOrDuration
	// SelectorRelabel selects the blocks of this shard.
	SelectorRelabel          []*relabel.Config
	ConsistencyDelay         time.Duration
	IgnoreDeletionMarksDelay time.Duration

	// IndexCache configures the index cache; nil means in-memory of IndexCacheSize bytes.
	IndexCache     *cache.IndexCacheConfig
	IndexCacheSize int64
	// CachingBucket, when set, caches chunks, metas and listings.
	CachingBucket *cache.BucketCacheConfig
	// ChunkDiskCacheSize bounds the chunk pages kept under DataDir; 0 disables it.
	ChunkDiskCacheSize int64

	Limits                      bucketstore.Limits
	LazyIndexHeader             bool
	LazyIndexHeaderIdleTimeout  time.Duration
	PostingOffsetsInMemSampling int
}

// DefaultConfig has Thanos's defaults.
func DefaultConfig() Config {
	return Config{
		DataDir:                     "./data",
		SyncInterval:                3 * time.Minute,
		BlockSyncConcurrency:        20,
		BlockMetaFetchConcurrency:   32,
		MinTime:                     fetcher.MinTimeUnbounded,
		MaxTime:                     fetcher.MaxTimeUnbounded,
		IgnoreDeletionMarksDelay:    24 * time.Hour,
		IndexCacheSize:              250 << 20,
		ChunkDiskCacheSize:          4 << 30,
		Limits:                      bucketstore.Limits{MaxConcurrency: 20},
		LazyIndexHeaderIdleTimeout:  5 * time.Minute,
		PostingOffsetsInMemSampling: 32,
	}
}

// Validate reports the first problem with the configuration.
func (c *Config) Validate() error {
	switch {
	case len(c.ObjstoreConfig) == 0 && c.Bucket == nil:
		return errors.New("an objstore config is required (--objstore.config-file or --objstore.config)")
	case c.DataDir == "":
		return errors.New("--data-dir is required")
	case c.SyncInterval <= 0:
		return fmt.Errorf("--sync-block-duration must be positive, got %s", c.SyncInterval)
	case c.BlockSyncConcurrency < 1:
		return fmt.Errorf("--block-sync-concurrency must be at least 1, got %d", c.BlockSyncConcurrency)
	case c.BlockMetaFetchConcurrency < 1:
		return fmt.Errorf("--block-meta-fetch-concurrency must be at least 1, got %d", c.BlockMetaFetchConcurrency)
	case c.ConsistencyDelay < 0:
		return fmt.Errorf("--consistency-delay must not be negative, got %s", c.ConsistencyDelay)
	case c.IgnoreDeletionMarksDelay < 0:
		return fmt.Errorf("--ignore-deletion-marks-delay must not be negative, got %s", c.IgnoreDeletionMarksDelay)
	case c.Limits.MaxConcurrency < 0:
		return fmt.Errorf("--store.grpc.series-max-concurrency must not be negative, got %d", c.Limits.MaxConcurrency)
	case c.PostingOffsetsInMemSampling < 1:
		return fmt.Errorf("--store.index-header-posting-offsets-in-mem-sampling must be at least 1, got %d", c.PostingOffsetsInMemSampling)
	case c.ChunkDiskCacheSize != 0 && c.ChunkDiskCacheSize < 4*cache.DiskChunkPageSize:
		return fmt.Errorf("--store.chunk-disk-cache-size must be 0 (off) or at least %d bytes, got %d", 4*cache.DiskChunkPageSize, c.ChunkDiskCacheSize)
	case c.IndexCache == nil && c.IndexCacheSize < 0:
		return fmt.Errorf("--index-cache-size must not be negative, got %d", c.IndexCacheSize)
	}
	now := time.Now()
	if c.MinTime.Millis(now) > c.MaxTime.Millis(now) {
		return fmt.Errorf("--min-time %s is after --max-time %s", c.MinTime, c.MaxTime)
	}
	return nil
}

// ChunkCacheDirname is the directory under the data dir of the disk chunk cache.
const ChunkCacheDirname = "chunk-cache"

// Gateway is the store gateway component.
type Gateway struct {
	logger  logr.Logger
	cfg     Config
	start   time.Time
	bkt     objstore.Bucket
	store   *bucketstore.Store
	fetcher *fetcher.MetaFetcher
}

// New returns a store gateway for cfg, registering its metrics on reg.
func New(logger logr.Logger, reg prometheus.Registerer, cfg Config) (*Gateway, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	bkt := cfg.Bucket
	if bkt == nil {
		var err error
		bkt, err = client.NewBucket(kitLogger{logger.WithName("objstore")}, cfg.ObjstoreConfig, "store", nil)
		if err != nil {
			return nil, fmt.Errorf("create bucket client: %w", err)
		}
	}
	// Thanos's objstore metrics (thanos_objstore_bucket_*) count the real
	// bucket traffic, underneath the caching bucket.
	bkt = objstore.WrapWithMetrics(bkt, prometheus.WrapRegistererWithPrefix("thanos_", reg), bkt.Name())
	if cfg.CachingBucket != nil {
		cb, err := cache.NewCachingBucketFromConfig(bkt, cfg.CachingBucket, logger.WithName("caching-bucket"), reg)
		if err != nil {
			return nil, fmt.Errorf("create caching bucket: %w", err)
		}
		bkt = cb
	}
	if cfg.ChunkDiskCacheSize > 0 {
		dc, err := cache.NewDiskChunks(bkt, filepath.Join(cfg.DataDir, ChunkCacheDirname), cfg.ChunkDiskCacheSize, logger.WithName("chunk-disk-cache"), reg)
		if err != nil {
			return nil, err
		}
		bkt = dc
	}

	var indexCache *cache.IndexCache
	if cfg.IndexCache != nil {
		var err error
		indexCache, err = cache.NewIndexCacheFromConfig(cfg.IndexCache, logger.WithName("index-cache"), reg)
		if err != nil {
			return nil, fmt.Errorf("create index cache: %w", err)
		}
	} else if cfg.IndexCacheSize > 0 {
		backend := cache.NewInMemory("index-cache", cfg.IndexCacheSize, cfg.IndexCacheSize/2, reg)
		indexCache = cache.NewIndexCache(backend, 0, nil, reg)
	}

	f, err := fetcher.New(logger.WithName("fetcher"), bkt, cfg.BlockMetaFetchConcurrency,
		filepath.Join(cfg.DataDir, fetcher.CacheDirname), reg,
		&fetcher.TimePartitionFilter{MinTime: cfg.MinTime, MaxTime: cfg.MaxTime},
		&fetcher.LabelShardedFilter{Configs: cfg.SelectorRelabel},
		&fetcher.ConsistencyDelayFilter{Delay: cfg.ConsistencyDelay},
		&fetcher.DeletionMarkFilter{Bkt: bkt, Delay: cfg.IgnoreDeletionMarksDelay, Concurrency: cfg.BlockMetaFetchConcurrency},
		fetcher.DeduplicateFilter{},
	)
	if err != nil {
		return nil, fmt.Errorf("create meta fetcher: %w", err)
	}
	store, err := bucketstore.New(bkt, f, bucketstore.Options{
		Logger: logger.WithName("bucket-store"), Registry: reg, Dir: cfg.DataDir,
		BlockSyncConcurrency:        cfg.BlockSyncConcurrency,
		PostingOffsetsInMemSampling: cfg.PostingOffsetsInMemSampling,
		LazyIndexHeader:             cfg.LazyIndexHeader,
		LazyIndexHeaderIdleTimeout:  cfg.LazyIndexHeaderIdleTimeout,
		IndexCache:                  indexCache,
		Limits:                      cfg.Limits,
		MinTime:                     cfg.MinTime,
		MaxTime:                     cfg.MaxTime,
	})
	if err != nil {
		return nil, fmt.Errorf("create bucket store: %w", err)
	}
	return &Gateway{logger: logger, cfg: cfg, start: time.Now(), bkt: bkt, store: store, fetcher: f}, nil
}

// Store is the underlying bucket store (tests).
func (g *Gateway) Store() *bucketstore.Store { return g.store }

type storeServer struct {
	storepb.UnimplementedStoreServer
	s *bucketstore.Store
}

func (s storeServer) Series(req *storepb.SeriesRequest, srv storepb.Store_SeriesServer) error {
	return s.s.Series(req, srv)
}

func (s storeServer) LabelNames(ctx context.Context, req *storepb.LabelNamesRequest) (*storepb.LabelNamesResponse, error) {
	return s.s.LabelNames(ctx, req)
}

func (s storeServer) LabelValues(ctx context.Context, req *storepb.LabelValuesRequest) (*storepb.LabelValuesResponse, error) {
	return s.s.LabelValues(ctx, req)
}

type infoServer struct {
	infopb.UnimplementedInfoServer
	s *bucketstore.Store
}

func (s infoServer) Info(ctx context.Context, req *infopb.InfoRequest) (*infopb.InfoResponse, error) {
	return s.s.Info(ctx, req)
}

// RegisterGRPC adds the StoreAPI and Info services.
func (g *Gateway) RegisterGRPC(s *grpc.Server) {
	storepb.RegisterStoreServer(s, storeServer{s: g.store})
	infopb.RegisterInfoServer(s, infoServer{s: g.store})
}

// BlocksPath serves the loaded blocks, as Thanos's blocks API does.
const BlocksPath = "/api/v1/blocks"

// RegisterHTTP adds store gateway endpoints.
func (g *Gateway) RegisterHTTP(h *server.HTTP) {
	h.Handle("GET "+BlocksPath, http.HandlerFunc(g.serveBlocks))
}

// BlocksResponse is the body of BlocksPath.
type BlocksResponse struct {
	Status string `json:"status"`
	Data   struct {
		Blocks      []block.Meta `json:"blocks"`
		RefreshedAt time.Time    `json:"refreshedAt"`
		Err         *string      `json:"err"`
		Label       string       `json:"label"`
	} `json:"data"`
}

func (g *Gateway) serveBlocks(w http.ResponseWriter, _ *http.Request) {
	st := g.store.Status()
	var resp BlocksResponse
	resp.Status = "success"
	resp.Data.Blocks = g.store.Blocks()
	if resp.Data.Blocks == nil {
		resp.Data.Blocks = []block.Meta{}
	}
	resp.Data.RefreshedAt = st.LastSync
	if st.LastSyncErr != nil {
		e := st.LastSyncErr.Error()
		resp.Data.Err = &e
	}
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(resp)
}

// Status reports the gateway's state for the operator.
func (g *Gateway) Status() agentstatus.Status {
	st := g.store.Status()
	ss := &agentstatus.StoreStatus{
		BlocksLoaded:     int64(st.BlocksLoaded),
		InitialSyncDone:  st.InitialSyncDone,
		IndexHeaderBytes: st.IndexHeaderBytes,
	}
	if !st.LastSync.IsZero() {
		t := st.LastSync
		ss.LastSyncTime = &t
	}
	if st.LastSyncErr != nil {
		ss.LastSyncError = st.LastSyncErr.Error()
	}
	if st.BlocksLoaded > 0 {
		ss.MinTime, ss.MaxTime = st.MinTime, st.MaxTime
	}
	return agentstatus.Status{Component: agentstatus.ComponentStore, StartTime: g.start, Store: ss}
}

// Run syncs the bucket until ctx is done: the initial sync (retried until it
// succeeds) gates readiness, then the bucket is synced every SyncInterval.
func (g *Gateway) Run(ctx context.Context, prober *server.Prober) error {
	defer func() {
		if err := g.store.Close(); err != nil {
			g.logger.Info("closing bucket store failed", "err", err)
		}
		_ = g.bkt.Close()
	}()
	begin := time.Now()
	for {
		err := g.store.InitialSync(ctx)
		if err == nil {
			break
		}
		if ctx.Err() != nil {
			return nil
		}
		g.logger.Error(err, "initial bucket sync failed; retrying")
		prober.NotReady(fmt.Errorf("initial sync: %w", err))
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(5 * time.Second):
		}
	}
	st := g.store.Status()
	g.logger.Info("bucket store ready", "blocks", st.BlocksLoaded, "duration", time.Since(begin))
	if st.LastSyncErr != nil {
		g.logger.Info("some blocks could not be loaded; retrying on next sync", "err", st.LastSyncErr)
	}
	prober.Ready()

	sync := time.NewTicker(g.cfg.SyncInterval)
	defer sync.Stop()
	idle := time.NewTicker(time.Minute)
	defer idle.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-sync.C:
			if err := g.store.SyncBlocks(ctx); err != nil && ctx.Err() == nil {
				g.logger.Error(err, "syncing blocks failed")
			}
		case <-idle.C:
			g.store.CloseIdleReaders()
		}
	}
}

// kitLogger adapts logr to the go-kit logger the objstore clients take.
type kitLogger struct{ l logr.Logger }

func (k kitLogger) Log(kv ...any) error {
	msg := "objstore"
	rest := make([]any, 0, len(kv))
	for i := 0; i+1 < len(kv); i += 2 {
		if kv[i] == "msg" {
			msg = fmt.Sprint(kv[i+1])
			continue
		}
		if kv[i] == "level" {
			continue
		}
		rest = append(rest, fmt.Sprint(kv[i]), kv[i+1])
	}
	k.l.V(1).Info(msg, rest...)
	return nil
}
