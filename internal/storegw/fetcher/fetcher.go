// Package fetcher discovers the blocks of a bucket: it lists block
// directories, reads their meta.json concurrently (caching them on local
// disk), and passes the metas through filters that decide which blocks a
// store gateway serves.
package fetcher

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/go-logr/logr"
	"github.com/oklog/ulid/v2"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/thanos-io/objstore"
	"golang.org/x/sync/errgroup"

	"github.com/stevedore-dev/stevedore/internal/block"
)

// Sync states of the thanos_blocks_meta_synced gauge, as Thanos names them.
const (
	StateLoaded       = "loaded"
	StateFailed       = "failed"
	StateNoMeta       = "no-meta-json"
	StateCorrupted    = "corrupted-meta-json"
	StateTimeExcluded = "time-excluded"
	StateLabelExclude = "label-excluded"
	StateTooFresh     = "too-fresh"
	StateDuplicate    = "duplicate"
	StateMarked       = "marked-for-deletion"
)

var allStates = []string{StateLoaded, StateFailed, StateNoMeta, StateCorrupted, StateTimeExcluded, StateLabelExclude, StateTooFresh, StateDuplicate, StateMarked}

// CacheDirname is the sub-directory of the data dir where metas are cached;
// the name Thanos uses, so a data dir can move between the two.
const CacheDirname = "meta-syncer"

// Counts collects how many blocks a sync excluded, by state.
type Counts map[string]int

// Filter removes blocks from metas; it may record why in counts.
type Filter interface {
	Filter(ctx context.Context, metas map[ulid.ULID]*block.Meta, counts Counts) error
}

var (
	errMetaNotFound  = errors.New("meta.json not found")
	errMetaCorrupted = errors.New("meta.json corrupted")
)

type metrics struct {
	syncs        prometheus.Counter
	syncFailures prometheus.Counter
	syncDuration prometheus.Histogram
	synced       *prometheus.GaugeVec
}

func newMetrics(reg prometheus.Registerer) *metrics {
	m := &metrics{
		syncs: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "thanos_blocks_meta_syncs_total", Help: "Total blocks metadata synchronization attempts.",
		}),
		syncFailures: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "thanos_blocks_meta_sync_failures_total", Help: "Total blocks metadata synchronization failures.",
		}),
		syncDuration: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "thanos_blocks_meta_sync_duration_seconds", Help: "Duration of the blocks metadata synchronization in seconds.",
			Buckets: []float64{0.01, 0.1, 0.3, 0.6, 1, 3, 6, 9, 20, 30, 60, 90, 120, 240, 360, 720},
		}),
		synced: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "thanos_blocks_meta_synced", Help: "Number of block metadata synced, by state.",
		}, []string{"state"}),
	}
	if reg != nil {
		reg.MustRegister(m.syncs, m.syncFailures, m.syncDuration, m.synced)
	}
	return m
}

// MetaFetcher lists the blocks of a bucket and returns their filtered metas.
// Safe for concurrent use; concurrent Fetch calls are serialised.
type MetaFetcher struct {
	logger      logr.Logger
	bkt         objstore.BucketReader
	concurrency int
	cacheDir    string
	filters     []Filter
	metrics     *metrics

	fetchMu sync.Mutex
	mu      sync.Mutex
	cached  map[ulid.ULID]*block.Meta
}

// New returns a fetcher. cacheDir, when not empty, is where metas are kept
// across restarts (usually <data-dir>/meta-syncer).
func New(logger logr.Logger, bkt objstore.BucketReader, concurrency int, cacheDir string, reg prometheus.Registerer, filters ...Filter) (*MetaFetcher, error) {
	if concurrency < 1 {
		return nil, fmt.Errorf("meta fetch concurrency must be at least 1, got %d", concurrency)
	}
	if cacheDir != "" {
		if err := os.MkdirAll(cacheDir, 0o755); err != nil {
			return nil, fmt.Errorf("create meta cache dir: %w", err)
		}
	}
	return &MetaFetcher{
		logger: logger, bkt: bkt, concurrency: concurrency, cacheDir: cacheDir, filters: filters,
		metrics: newMetrics(reg), cached: map[ulid.ULID]*block.Meta{},
	}, nil
}

// Result is the outcome of one Fetch.
type Result struct {
	// Metas of the blocks that passed every filter.
	Metas map[ulid.ULID]*block.Meta
	// Partial blocks: no or unreadable meta.json (an upload in progress or abandoned).
	Partial map[ulid.ULID]error
	// Counts of blocks by sync state.
	Counts Counts
}

// Fetch lists the bucket and returns the filtered metas. A non-nil error with
// a non-nil result means an incomplete view: some metas could not be read
// (other than missing or corrupted ones, which only make a block partial).
func (f *MetaFetcher) Fetch(ctx context.Context) (res *Result, err error) {
	f.fetchMu.Lock()
	defer f.fetchMu.Unlock()
	start := time.Now()
	f.metrics.syncs.Inc()
	defer func() {
		f.metrics.syncDuration.Observe(time.Since(start).Seconds())
		if err != nil {
			f.metrics.syncFailures.Inc()
		}
	}()

	res = &Result{Metas: map[ulid.ULID]*block.Meta{}, Partial: map[ulid.ULID]error{}, Counts: Counts{}}
	var (
		mu      sync.Mutex
		metaErr []error
		ids     = make(chan ulid.ULID)
	)
	g, gctx := errgroup.WithContext(ctx)
	for range f.concurrency {
		g.Go(func() error {
			for id := range ids {
				m, err := f.loadMeta(gctx, id)
				mu.Lock()
				switch {
				case err == nil:
					res.Metas[id] = m
				case errors.Is(err, errMetaNotFound):
					res.Partial[id] = err
					res.Counts[StateNoMeta]++
				case errors.Is(err, errMetaCorrupted):
					res.Partial[id] = err
					res.Counts[StateCorrupted]++
				default:
					metaErr = append(metaErr, err)
					res.Counts[StateFailed]++
				}
				mu.Unlock()
			}
			return nil
		})
	}
	g.Go(func() error {
		defer close(ids)
		return f.bkt.Iter(gctx, "", func(name string) error {
			id, ok := block.IsBlockDir(strings.TrimSuffix(name, "/"))
			if !ok {
				return nil
			}
			select {
			case ids <- id:
				return nil
			case <-gctx.Done():
				return gctx.Err()
			}
		})
	})
	if err := g.Wait(); err != nil {
		return nil, fmt.Errorf("list blocks: %w", err)
	}

	if len(metaErr) == 0 {
		// Only a complete view may evict cached metas of vanished blocks.
		f.mu.Lock()
		f.cached = make(map[ulid.ULID]*block.Meta, len(res.Metas))
		for id, m := range res.Metas {
			f.cached[id] = m
		}
		f.mu.Unlock()
		f.cleanCacheDir(res.Metas)
	}

	for _, flt := range f.filters {
		if err := flt.Filter(ctx, res.Metas, res.Counts); err != nil {
			return nil, fmt.Errorf("filter metas: %w", err)
		}
	}
	res.Counts[StateLoaded] = len(res.Metas)
	for _, s := range allStates {
		f.metrics.synced.WithLabelValues(s).Set(float64(res.Counts[s]))
	}
	if len(metaErr) > 0 {
		return res, fmt.Errorf("incomplete view: %w", errors.Join(metaErr...))
	}
	f.logger.V(1).Info("synchronized block metadata", "duration", time.Since(start), "returned", len(res.Metas), "partial", len(res.Partial))
	return res, nil
}

// loadMeta returns the meta of block id from memory, the local cache or the bucket.
func (f *MetaFetcher) loadMeta(ctx context.Context, id ulid.ULID) (*block.Meta, error) {
	f.mu.Lock()
	m, ok := f.cached[id]
	f.mu.Unlock()
	if ok {
		return m, nil
	}
	var cacheDir string
	if f.cacheDir != "" {
		cacheDir = filepath.Join(f.cacheDir, id.String())
		m, err := block.ReadMetaFromDir(cacheDir)
		if err == nil && m.ULID == id {
			return m, nil
		}
		if err != nil && !errors.Is(err, os.ErrNotExist) {
			f.logger.Info("removing unreadable cached meta.json", "dir", cacheDir, "err", err)
			_ = os.RemoveAll(cacheDir)
		}
	}
	name := block.MetaObject(id)
	rc, err := f.bkt.Get(ctx, name)
	if err != nil {
		if f.bkt.IsObjNotFoundErr(err) {
			return nil, fmt.Errorf("block %s: %w", id, errMetaNotFound)
		}
		return nil, fmt.Errorf("get %s: %w", name, err)
	}
	defer func() { _ = rc.Close() }()
	b, err := io.ReadAll(io.LimitReader(rc, 64<<20))
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", name, err)
	}
	m, err = decodeMeta(b)
	if err != nil {
		return nil, fmt.Errorf("%s: %w: %w", name, err, errMetaCorrupted)
	}
	if m.ULID != id {
		return nil, fmt.Errorf("%s: ULID %s does not match its directory: %w", name, m.ULID, errMetaCorrupted)
	}
	if cacheDir != "" {
		if err := os.MkdirAll(cacheDir, 0o755); err == nil {
			if err := m.WriteToDir(cacheDir); err != nil {
				f.logger.Info("caching meta.json failed; ignoring", "dir", cacheDir, "err", err)
			}
		}
	}
	return m, nil
}

func decodeMeta(b []byte) (*block.Meta, error) {
	if !json.Valid(b) {
		return nil, errors.New("invalid JSON")
	}
	return block.ReadMeta(strings.NewReader(string(b)))
}

func (f *MetaFetcher) cleanCacheDir(keep map[ulid.ULID]*block.Meta) {
	if f.cacheDir == "" {
		return
	}
	entries, err := os.ReadDir(f.cacheDir)
	if err != nil {
		f.logger.Info("listing meta cache dir failed; ignoring", "err", err)
		return
	}
	for _, e := range entries {
		id, ok := block.IsBlockDir(e.Name())
		if !ok {
			continue
		}
		if _, ok := keep[id]; ok {
			continue
		}
		_ = os.RemoveAll(filepath.Join(f.cacheDir, e.Name()))
	}
}
