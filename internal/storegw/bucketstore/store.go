// Package bucketstore serves the blocks of an object storage bucket over the
// Thanos StoreAPI: it keeps the set of loaded blocks in sync with the bucket
// (index-headers on local disk) and answers Series, LabelNames, LabelValues
// and Info with ranged reads of indexes and chunks.
package bucketstore

import (
	"context"
	"errors"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"sort"
	"sync"
	"time"

	"github.com/go-logr/logr"
	"github.com/oklog/ulid/v2"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/thanos-io/objstore"

	"github.com/stevedore-dev/stevedore/internal/block"
	"github.com/stevedore-dev/stevedore/internal/storegw/cache"
	"github.com/stevedore-dev/stevedore/internal/storegw/fetcher"
	"github.com/stevedore-dev/stevedore/internal/storegw/indexheader"
)

// Limits bound what one request may do; zero means unlimited.
type Limits struct {
	// SeriesSampleLimit is the most samples one Series call may return.
	SeriesSampleLimit uint64
	// TouchedSeriesLimit is the most series one Series call may touch.
	TouchedSeriesLimit uint64
	// MaxConcurrency is the most Series calls served at once; others wait.
	MaxConcurrency int
}

// Options configure a Store.
type Options struct {
	Logger   logr.Logger
	Registry prometheus.Registerer
	// Dir holds one directory per loaded block with its index-header.
	Dir                  string
	BlockSyncConcurrency int
	// PostingOffsetsInMemSampling keeps every n-th postings offset in memory.
	PostingOffsetsInMemSampling int
	// LazyIndexHeader opens index-headers on first use and closes them after
	// LazyIndexHeaderIdleTimeout without use.
	LazyIndexHeader            bool
	LazyIndexHeaderIdleTimeout time.Duration
	IndexCache                 *cache.IndexCache
	Limits                     Limits
	// MinTime and MaxTime clamp the time range of every request.
	MinTime, MaxTime fetcher.TimeOrDuration
}

// Store is the bucket store.
type Store struct {
	logger  logr.Logger
	bkt     objstore.BucketReader
	fetcher *fetcher.MetaFetcher
	opts    Options
	metrics *metrics
	gate    chan struct{}

	mu     sync.RWMutex
	blocks map[ulid.ULID]*bucketBlock

	statusMu      sync.Mutex
	lastSync      time.Time
	lastSyncErr   error
	lastLoadErr   error
	initialSynced bool
}

// New returns a store serving bkt; call InitialSync before serving.
func New(bkt objstore.BucketReader, f *fetcher.MetaFetcher, opts Options) (*Store, error) {
	if opts.Dir == "" {
		return nil, errors.New("bucket store needs a data dir")
	}
	if err := os.MkdirAll(opts.Dir, 0o755); err != nil {
		return nil, fmt.Errorf("create data dir: %w", err)
	}
	if opts.BlockSyncConcurrency < 1 {
		opts.BlockSyncConcurrency = 1
	}
	if opts.LazyIndexHeaderIdleTimeout <= 0 {
		opts.LazyIndexHeaderIdleTimeout = 5 * time.Minute
	}
	if opts.MinTime.Time == nil && opts.MinTime.Dur == nil {
		opts.MinTime = fetcher.MinTimeUnbounded
	}
	if opts.MaxTime.Time == nil && opts.MaxTime.Dur == nil {
		opts.MaxTime = fetcher.MaxTimeUnbounded
	}
	s := &Store{
		logger: opts.Logger, bkt: bkt, fetcher: f, opts: opts,
		metrics: newMetrics(opts.Registry), blocks: map[ulid.ULID]*bucketBlock{},
	}
	if opts.Limits.MaxConcurrency > 0 {
		s.gate = make(chan struct{}, opts.Limits.MaxConcurrency)
		s.metrics.gateMax.Set(float64(opts.Limits.MaxConcurrency))
	}
	return s, nil
}

// InitialSync loads every block of the bucket and removes local directories
// of blocks that are gone, which can only appear across restarts.
func (s *Store) InitialSync(ctx context.Context) error {
	if err := s.SyncBlocks(ctx); err != nil {
		return fmt.Errorf("initial sync: %w", err)
	}
	entries, err := os.ReadDir(s.opts.Dir)
	if err != nil {
		return fmt.Errorf("read data dir: %w", err)
	}
	for _, e := range entries {
		id, ok := block.IsBlockDir(e.Name())
		if !ok || s.getBlock(id) != nil {
			continue
		}
		if err := os.RemoveAll(filepath.Join(s.opts.Dir, e.Name())); err != nil {
			s.logger.Info("removing directory of unknown block failed", "block", id, "err", err)
		}
	}
	s.statusMu.Lock()
	s.initialSynced = true
	s.statusMu.Unlock()
	return nil
}

// SyncBlocks loads new blocks and drops blocks that left the bucket (or the
// filters). A partial view of the bucket (some metas unreadable) still loads
// new blocks but drops nothing.
func (s *Store) SyncBlocks(ctx context.Context) (err error) {
	s.metrics.syncs.Inc()
	defer func() {
		s.statusMu.Lock()
		s.lastSyncErr = err
		if err == nil {
			s.lastSync = time.Now()
			s.metrics.lastSync.SetToCurrentTime()
		} else {
			s.metrics.syncFailures.Inc()
		}
		s.statusMu.Unlock()
	}()
	res, fetchErr := s.fetcher.Fetch(ctx)
	if res == nil {
		return fetchErr
	}
	var (
		wg     sync.WaitGroup
		metas  = make(chan *block.Meta)
		loadMu sync.Mutex
		loadEr []error
	)
	for range s.opts.BlockSyncConcurrency {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for m := range metas {
				if err := s.addBlock(ctx, m); err != nil {
					loadMu.Lock()
					loadEr = append(loadEr, err)
					loadMu.Unlock()
				}
			}
		}()
	}
	for id, m := range res.Metas {
		if s.getBlock(id) != nil {
			continue
		}
		select {
		case metas <- m:
		case <-ctx.Done():
		}
	}
	close(metas)
	wg.Wait()
	if ctx.Err() != nil {
		return ctx.Err()
	}
	if fetchErr != nil {
		return fetchErr
	}
	s.mu.RLock()
	var gone []ulid.ULID
	for id := range s.blocks {
		if _, ok := res.Metas[id]; !ok {
			gone = append(gone, id)
		}
	}
	s.mu.RUnlock()
	for _, id := range gone {
		s.removeBlock(id)
	}
	if len(loadEr) > 0 {
		// Blocks that fail to load are retried on the next sync; the store
		// still serves everything else, so this is not a sync failure.
		s.statusMu.Lock()
		s.lastLoadErr = fmt.Errorf("load blocks: %w", errors.Join(loadEr...))
		s.statusMu.Unlock()
	} else {
		s.statusMu.Lock()
		s.lastLoadErr = nil
		s.statusMu.Unlock()
	}
	return nil
}

func (s *Store) getBlock(id ulid.ULID) *bucketBlock {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.blocks[id]
}

// addBlock opens (building if needed) the block's index-header and registers it.
func (s *Store) addBlock(ctx context.Context, meta *block.Meta) (err error) {
	start := time.Now()
	dir := filepath.Join(s.opts.Dir, meta.ULID.String())
	s.metrics.blockLoads.Inc()
	defer func() {
		if err != nil {
			s.metrics.blockLoadFailures.Inc()
			_ = os.RemoveAll(dir)
			s.logger.Info("loading block failed", "block", meta.ULID, "err", err)
			return
		}
		s.logger.V(1).Info("loaded block", "block", meta.ULID, "elapsed", time.Since(start))
	}()
	b := &bucketBlock{
		meta: meta, dir: dir, bkt: s.bkt, cache: s.opts.IndexCache,
		extLset: labels.FromMap(meta.Thanos.Labels),
	}
	if err := b.objectSizes(ctx); err != nil {
		return err
	}
	ihPath := filepath.Join(dir, indexheader.Filename)
	r, err := s.openIndexHeader(ctx, meta.ULID, ihPath)
	if err != nil {
		return err
	}
	if st, err := os.Stat(ihPath); err == nil {
		b.ihSize = st.Size()
	}
	if s.opts.LazyIndexHeader {
		// The eager open above verified the file; serve it lazily from now on.
		_ = r.Close()
		b.ih = indexheader.NewLazyReader(ihPath, s.opts.PostingOffsetsInMemSampling, func(d time.Duration) {
			s.metrics.ihLoadDuration.Observe(d.Seconds())
		})
	} else {
		b.ih = r
	}
	s.mu.Lock()
	s.blocks[meta.ULID] = b
	s.mu.Unlock()
	s.metrics.blocksLoaded.Inc()
	s.metrics.ihBytes.Add(float64(b.ihSize))
	return nil
}

// openIndexHeader opens the index-header at path, rebuilding it from the
// bucket when it is missing or does not verify.
func (s *Store) openIndexHeader(ctx context.Context, id ulid.ULID, path string) (*indexheader.BinaryReader, error) {
	start := time.Now()
	r, err := indexheader.Open(path, s.opts.PostingOffsetsInMemSampling)
	if err == nil {
		s.metrics.ihLoadDuration.Observe(time.Since(start).Seconds())
		return r, nil
	}
	if !errors.Is(err, os.ErrNotExist) {
		s.logger.Info("index-header unreadable; rebuilding", "block", id, "err", err)
	}
	start = time.Now()
	if _, err := indexheader.Build(ctx, s.bkt, id, path); err != nil {
		return nil, fmt.Errorf("build index-header of %s: %w", id, err)
	}
	s.metrics.ihBuildDuration.Observe(time.Since(start).Seconds())
	start = time.Now()
	r, err = indexheader.Open(path, s.opts.PostingOffsetsInMemSampling)
	if err != nil {
		return nil, fmt.Errorf("open index-header of %s: %w", id, err)
	}
	s.metrics.ihLoadDuration.Observe(time.Since(start).Seconds())
	return r, nil
}

func (s *Store) removeBlock(id ulid.ULID) {
	s.mu.Lock()
	b, ok := s.blocks[id]
	delete(s.blocks, id)
	s.mu.Unlock()
	if !ok {
		return
	}
	// Close only once in-flight requests are done with the mmapped file.
	go func() {
		b.pending.Wait()
		if err := b.ih.Close(); err != nil {
			s.logger.Info("closing index-header failed", "block", id, "err", err)
		}
		if err := os.RemoveAll(b.dir); err != nil {
			s.logger.Info("removing block directory failed", "block", id, "err", err)
		}
	}()
	s.metrics.blocksLoaded.Dec()
	s.metrics.blockDrops.Inc()
	s.metrics.ihBytes.Sub(float64(b.ihSize))
	s.logger.Info("dropped block", "block", id)
}

// CloseIdleReaders unloads lazy index-headers idle for the configured timeout.
func (s *Store) CloseIdleReaders() {
	if !s.opts.LazyIndexHeader {
		return
	}
	s.mu.RLock()
	defer s.mu.RUnlock()
	for _, b := range s.blocks {
		if l, ok := b.ih.(*indexheader.LazyReader); ok {
			l.CloseIfIdle(s.opts.LazyIndexHeaderIdleTimeout)
		}
	}
}

// Close releases every block once the requests using it are done.
func (s *Store) Close() error {
	s.mu.Lock()
	blocks := s.blocks
	s.blocks = map[ulid.ULID]*bucketBlock{}
	s.mu.Unlock()
	var errs []error
	for _, b := range blocks {
		b.pending.Wait()
		if err := b.ih.Close(); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// snapshot returns the loaded blocks sorted by min time then ULID.
func (s *Store) snapshot() []*bucketBlock {
	s.mu.RLock()
	out := make([]*bucketBlock, 0, len(s.blocks))
	for _, b := range s.blocks {
		out = append(out, b)
	}
	s.mu.RUnlock()
	sort.Slice(out, func(i, j int) bool {
		if out[i].meta.MinTime != out[j].meta.MinTime {
			return out[i].meta.MinTime < out[j].meta.MinTime
		}
		if out[i].meta.MaxTime != out[j].meta.MaxTime {
			return out[i].meta.MaxTime < out[j].meta.MaxTime
		}
		return out[i].meta.ULID.Compare(out[j].meta.ULID) < 0
	})
	return out
}

// Blocks returns the metas of the loaded blocks.
func (s *Store) Blocks() []block.Meta {
	bs := s.snapshot()
	out := make([]block.Meta, 0, len(bs))
	for _, b := range bs {
		out = append(out, *b.meta)
	}
	return out
}

// Status summarises the store for the status API.
type Status struct {
	BlocksLoaded     int
	LastSync         time.Time
	LastSyncErr      error
	InitialSyncDone  bool
	MinTime, MaxTime int64
	IndexHeaderBytes int64
}

// Status reports the sync state.
func (s *Store) Status() Status {
	bs := s.snapshot()
	st := Status{BlocksLoaded: len(bs)}
	for _, b := range bs {
		st.IndexHeaderBytes += b.ihSize
	}
	if len(bs) > 0 {
		st.MinTime, st.MaxTime = s.TimeRange()
	}
	s.statusMu.Lock()
	st.LastSync, st.LastSyncErr, st.InitialSyncDone = s.lastSync, s.lastSyncErr, s.initialSynced
	if st.LastSyncErr == nil {
		st.LastSyncErr = s.lastLoadErr
	}
	s.statusMu.Unlock()
	return st
}

// TimeRange is the time range served, clamped by --min-time/--max-time.
func (s *Store) TimeRange() (mint, maxt int64) {
	mint, maxt = math.MaxInt64, math.MinInt64
	for _, b := range s.snapshot() {
		mint = min(mint, b.meta.MinTime)
		maxt = max(maxt, b.meta.MaxTime)
	}
	return s.limitMin(mint), s.limitMax(maxt)
}

func (s *Store) limitMin(t int64) int64 { return max(t, s.opts.MinTime.Millis(time.Now())) }
func (s *Store) limitMax(t int64) int64 { return min(t, s.opts.MaxTime.Millis(time.Now())) }

// Dir is the data dir holding the blocks' index-headers.
func (s *Store) Dir() string { return s.opts.Dir }
