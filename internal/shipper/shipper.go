// Package shipper detects finished TSDB blocks in a Prometheus data directory
// and uploads each of them once to object storage in the Thanos bucket layout.
package shipper

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"time"

	"github.com/go-logr/logr"
	"github.com/oklog/ulid/v2"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/thanos-io/objstore"
	"golang.org/x/sync/errgroup"

	"github.com/stevedore-dev/stevedore/internal/block"
)

// stagingDir is where blocks are hard-linked during upload, below the TSDB
// directory (same file system, so links work), as in Thanos.
var stagingDir = filepath.Join("thanos", "upload")

// Shipper uploads the blocks of one TSDB directory.
type Shipper struct {
	logger  logr.Logger
	dir     string
	bkt     objstore.Bucket
	labels  func() labels.Labels
	metrics *metrics
	opts    options

	// syncMu makes Sync calls take turns: the staging directory and the
	// shipper file belong to one Sync at a time.
	syncMu sync.Mutex

	mu     sync.Mutex
	status Status
}

// Status is what the shipper reports for the status API.
type Status struct {
	// Uploaded is the number of local blocks known to be in the bucket.
	Uploaded int
	// Pending is the number of eligible local blocks not uploaded yet.
	Pending int
	// Failed is the number of blocks whose upload failed in the last sync.
	Failed            int
	LastUploadedBlock string
	LastUploadTime    time.Time
	LastSyncTime      time.Time
	LastError         string
	// MinTime is the smallest MinTime of the local blocks and MaxSyncTime the
	// largest MaxTime of the uploaded ones; HaveBlocks says whether any block
	// was seen (the times are meaningless otherwise).
	MinTime     int64
	MaxSyncTime int64
	HaveBlocks  bool
}

type options struct {
	uploadCompacted     bool
	allowOutOfOrder     bool
	hashFunc            block.HashFunc
	source              block.SourceType
	concurrency         int
	attempts            int
	backoff, maxBackoff time.Duration
	now                 func() time.Time
}

// Option configures a Shipper.
type Option func(*options)

// WithUploadCompacted uploads blocks of compaction level > 1 too.
func WithUploadCompacted(v bool) Option { return func(o *options) { o.uploadCompacted = v } }

// WithAllowOutOfOrderUpload goes on with newer blocks when one fails; the
// failed block is retried on the next sync.
func WithAllowOutOfOrderUpload(v bool) Option { return func(o *options) { o.allowOutOfOrder = v } }

// WithHashFunc records file hashes in meta.json.
func WithHashFunc(hf block.HashFunc) Option { return func(o *options) { o.hashFunc = hf } }

// WithSource sets meta.json's thanos.source (default sidecar).
func WithSource(s block.SourceType) Option { return func(o *options) { o.source = s } }

// WithConcurrency bounds how many chunk segments upload at once (default 4).
func WithConcurrency(n int) Option {
	return func(o *options) {
		if n > 0 {
			o.concurrency = n
		}
	}
}

// WithRetries sets how often one object upload is tried and the first
// backoff between tries (doubling up to 10× that).
func WithRetries(attempts int, backoff time.Duration) Option {
	return func(o *options) {
		if attempts > 0 {
			o.attempts = attempts
		}
		if backoff > 0 {
			o.backoff, o.maxBackoff = backoff, 10*backoff
		}
	}
}

// New returns a shipper for the TSDB in dir. labels returns the current
// external labels; a block is never uploaded without them.
func New(logger logr.Logger, metrics *Metrics, dir string, bkt objstore.Bucket, lset func() labels.Labels, opts ...Option) *Shipper {
	o := options{
		hashFunc:    block.HashNone,
		source:      block.SourceSidecar,
		concurrency: 4,
		attempts:    3,
		backoff:     500 * time.Millisecond,
		maxBackoff:  5 * time.Second,
		now:         time.Now,
	}
	for _, f := range opts {
		f(&o)
	}
	if metrics == nil {
		metrics = NewMetrics(nil)
	}
	return &Shipper{
		logger:  logger.WithName("shipper"),
		dir:     dir,
		bkt:     bkt,
		labels:  lset,
		metrics: metrics.m,
		opts:    o,
		status:  Status{MinTime: math.MaxInt64, MaxSyncTime: math.MinInt64},
	}
}

// Status returns a copy of the current state.
func (s *Shipper) Status() Status {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.status
}

// Timestamps returns the smallest MinTime of the local blocks and the largest
// MaxTime of the uploaded ones; ok is false before the first scan or when no
// block exists.
func (s *Shipper) Timestamps() (minTime, maxSyncTime int64, ok bool) {
	st := s.Status()
	return st.MinTime, st.MaxSyncTime, st.HaveBlocks
}

// Sync uploads every eligible block not yet in the bucket, oldest first, and
// returns how many it uploaded.
func (s *Shipper) Sync(ctx context.Context) (uploaded int, err error) {
	s.syncMu.Lock()
	defer s.syncMu.Unlock()
	s.metrics.dirSyncs.Inc()
	uploaded, err = s.sync(ctx)
	s.mu.Lock()
	s.status.LastSyncTime = s.opts.now()
	if err != nil {
		s.status.LastError = err.Error()
	} else {
		s.status.LastError = ""
	}
	s.mu.Unlock()
	if err != nil {
		s.metrics.dirSyncFailures.Inc()
	}
	return uploaded, err
}

func (s *Shipper) sync(ctx context.Context) (int, error) {
	meta, err := ReadMetaFile(s.dir)
	if err != nil {
		// The file only saves Exists calls: rebuild it from the bucket.
		if !isNotExist(err) {
			warn(s.logger, "reading shipper file failed, rebuilding it from the bucket", "file", MetaFilename, "err", err.Error())
		}
		meta = &Meta{Version: MetaVersion1}
	}
	hasUploaded := make(map[ulid.ULID]bool, len(meta.Uploaded))
	for _, id := range meta.Uploaded {
		hasUploaded[id] = true
	}
	// Rebuild the list with the blocks that still exist locally, as Thanos
	// does, so the file does not grow forever.
	meta.Uploaded = nil

	// A staging directory left by a killed process holds only hard links.
	if err := os.RemoveAll(filepath.Join(s.dir, stagingDir)); err != nil {
		return 0, fmt.Errorf("clean staging directory: %w", err)
	}

	metas, err := s.blockMetasFromOldest()
	if err != nil {
		return 0, err
	}
	minTime, maxSyncTime := int64(math.MaxInt64), int64(math.MinInt64)
	for _, m := range metas {
		minTime = min(minTime, m.MinTime)
	}
	markUploaded := func(m *block.Meta) {
		meta.Uploaded = append(meta.Uploaded, m.ULID)
		maxSyncTime = max(maxSyncTime, m.MaxTime)
	}
	var (
		uploaded, failed, pending int
		firstErr                  error
		lastID                    string
	)
	for i, m := range metas {
		if hasUploaded[m.ULID] {
			markUploaded(m)
			continue
		}
		if m.Stats.NumSamples == 0 {
			s.logger.V(1).Info("ignoring empty block", "block", m.ULID.String())
			continue
		}
		if m.Compaction.Level > 1 && !s.opts.uploadCompacted {
			continue
		}
		if firstErr != nil && !s.opts.allowOutOfOrder {
			// Everything after a failed block waits for it, so that the
			// bucket never has a gap a later compaction would bake in.
			pending++
			continue
		}
		exists, err := s.bkt.Exists(ctx, block.MetaObject(m.ULID))
		if err != nil {
			// Without the bucket nothing else can be decided either.
			pending += countEligible(metas[i:], hasUploaded, s.opts.uploadCompacted)
			s.writeMeta(meta)
			s.setScan(len(meta.Uploaded), pending, failed+1, minTime, maxSyncTime, len(metas) > 0)
			return uploaded, fmt.Errorf("check %s in bucket: %w", block.MetaObject(m.ULID), err)
		}
		if exists {
			markUploaded(m)
			continue
		}
		if err := s.upload(ctx, m); err != nil {
			s.metrics.uploadFailures.Inc()
			failed++
			pending++
			err = fmt.Errorf("upload block %s: %w", m.ULID, err)
			s.logger.Error(err, "shipping failed", "block", m.ULID.String())
			if firstErr == nil {
				firstErr = err
			}
			if ctx.Err() != nil {
				pending += countEligible(metas[i+1:], hasUploaded, s.opts.uploadCompacted)
				break
			}
			continue
		}
		markUploaded(m)
		uploaded++
		lastID = m.ULID.String()
		s.mu.Lock()
		s.status.LastUploadedBlock = lastID
		s.status.LastUploadTime = s.opts.now()
		s.mu.Unlock()
		// Record each block as soon as it is in the bucket, so a crash loses
		// at most the Exists call that would rediscover it.
		s.writeMeta(meta)
	}
	s.writeMeta(meta)
	s.setScan(len(meta.Uploaded), pending, failed, minTime, maxSyncTime, len(metas) > 0)
	return uploaded, firstErr
}

func countEligible(metas []*block.Meta, uploaded map[ulid.ULID]bool, compacted bool) int {
	n := 0
	for _, m := range metas {
		if !uploaded[m.ULID] && m.Stats.NumSamples > 0 && (m.Compaction.Level <= 1 || compacted) {
			n++
		}
	}
	return n
}

func (s *Shipper) writeMeta(meta *Meta) {
	if err := WriteMetaFile(s.dir, meta); err != nil {
		// Not fatal: the next sync rediscovers uploaded blocks with Exists.
		s.logger.Error(err, "write shipper file")
	}
}

func (s *Shipper) setScan(uploaded, pending, failed int, minTime, maxSyncTime int64, have bool) {
	s.metrics.pending.Set(float64(pending))
	s.mu.Lock()
	defer s.mu.Unlock()
	s.status.Uploaded = uploaded
	s.status.Pending = pending
	s.status.Failed = failed
	s.status.MinTime = minTime
	s.status.MaxSyncTime = maxSyncTime
	s.status.HaveBlocks = have
}

// blockMetasFromOldest reads the meta.json of every block directory, sorted
// by MinTime. Directories that vanish or are half-written (Prometheus
// compaction, retention) are skipped: the next scan sees their final state.
func (s *Shipper) blockMetasFromOldest() ([]*block.Meta, error) {
	entries, err := os.ReadDir(s.dir)
	if err != nil {
		return nil, fmt.Errorf("read TSDB directory: %w", err)
	}
	var metas []*block.Meta
	for _, e := range entries {
		if !e.IsDir() {
			continue
		}
		id, ok := block.IsBlockDir(e.Name())
		if !ok {
			continue
		}
		m, err := block.ReadMetaFromDir(filepath.Join(s.dir, e.Name()))
		if err != nil {
			if !isNotExist(err) {
				s.metrics.corruptedBlocks.Inc()
			}
			s.logger.V(1).Info("skipping block without readable meta.json", "block", e.Name(), "err", err.Error())
			continue
		}
		if m.ULID != id {
			s.metrics.corruptedBlocks.Inc()
			warn(s.logger, "skipping block whose meta.json names another ULID", "dir", e.Name(), "ulid", m.ULID.String())
			continue
		}
		metas = append(metas, m)
	}
	slices.SortFunc(metas, func(a, b *block.Meta) int {
		if a.MinTime != b.MinTime {
			if a.MinTime < b.MinTime {
				return -1
			}
			return 1
		}
		return a.ULID.Compare(b.ULID)
	})
	return metas, nil
}

// upload ships one block: hard-link it into the staging directory so that
// Prometheus can delete or compact it meanwhile, write meta.json with the
// Thanos section, then upload chunks, index and meta.json last. Whatever was
// uploaded of a failed block is deleted again.
func (s *Shipper) upload(ctx context.Context, m *block.Meta) (err error) {
	start := s.opts.now()
	id := m.ULID.String()
	s.logger.Info("upload new block", "block", id)
	lset := s.labels()
	if lset.IsEmpty() {
		return errors.New("no external labels: refusing to upload a block that could not be told apart from others")
	}
	updir := filepath.Join(s.dir, stagingDir, id)
	if err := os.RemoveAll(updir); err != nil {
		return fmt.Errorf("clean staging directory: %w", err)
	}
	if err := os.MkdirAll(filepath.Join(updir, block.ChunksDirname), 0o750); err != nil {
		return fmt.Errorf("create staging directory: %w", err)
	}
	defer func() {
		if rerr := os.RemoveAll(updir); rerr != nil {
			s.logger.Error(rerr, "remove staging directory", "dir", updir)
		}
	}()
	if err := hardlinkBlock(filepath.Join(s.dir, id), updir); err != nil {
		return err
	}

	meta := *m
	meta.Thanos.Version = block.ThanosVersion1
	meta.Thanos.Labels = lset.Map()
	meta.Thanos.Source = s.opts.source
	meta.Thanos.Downsample.Resolution = 0
	if meta.Thanos.SegmentFiles, err = block.SegmentFiles(updir); err != nil {
		return err
	}
	if meta.Thanos.Files, err = block.GatherFiles(updir, s.opts.hashFunc); err != nil {
		return err
	}
	meta.Thanos.UploadTime = s.opts.now().UTC()
	// The local copy in the staging dir mirrors what Thanos leaves there; the
	// original meta.json of Prometheus is untouched (a rename replaces the
	// hard link only when it was linked, and meta.json is not).
	if err := meta.WriteToDir(updir); err != nil {
		return fmt.Errorf("write meta.json: %w", err)
	}
	metaBytes, err := meta.Marshal()
	if err != nil {
		return err
	}

	var bytesUp int64
	var bytesMu sync.Mutex
	addBytes := func(n int64) { bytesMu.Lock(); bytesUp += n; bytesMu.Unlock() }
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(s.opts.concurrency)
	for _, seg := range meta.Thanos.SegmentFiles {
		g.Go(func() error {
			n, err := s.uploadFile(gctx, filepath.Join(updir, block.ChunksDirname, seg), block.ChunksObject(m.ULID, seg))
			addBytes(n)
			return err
		})
	}
	if err := g.Wait(); err != nil {
		return s.cleanUp(m.ULID, fmt.Errorf("upload chunks: %w", err))
	}
	n, err := s.uploadFile(ctx, filepath.Join(updir, block.IndexFilename), block.IndexObject(m.ULID))
	addBytes(n)
	if err != nil {
		return s.cleanUp(m.ULID, fmt.Errorf("upload index: %w", err))
	}
	if err := s.retry(ctx, func() error {
		return s.bkt.Upload(ctx, block.MetaObject(m.ULID), bytes.NewReader(metaBytes))
	}); err != nil {
		// The upload may have landed although the call failed (e.g. the
		// answer was lost). Keep the block if meta.json is there; otherwise
		// remove the parts so no meta-less block stays behind.
		ectx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
		ok, eerr := s.bkt.Exists(ectx, block.MetaObject(m.ULID))
		cancel()
		if eerr == nil && ok {
			s.logger.Info("meta.json upload reported an error but the object exists; block is uploaded", "block", id, "err", err.Error())
		} else {
			return s.cleanUp(m.ULID, fmt.Errorf("upload meta.json: %w", err))
		}
	}
	addBytes(int64(len(metaBytes)))
	s.metrics.uploads.Inc()
	s.metrics.uploadedBytes.Add(float64(bytesUp))
	s.metrics.uploadDuration.Observe(s.opts.now().Sub(start).Seconds())
	s.metrics.lastSuccess.SetToCurrentTime()
	if m.Compaction.Level > 1 {
		s.metrics.uploadedCompacted.Inc()
	}
	s.logger.Info("uploaded block", "block", id, "bytes", bytesUp, "duration", s.opts.now().Sub(start).String())
	return nil
}

// uploadFile uploads one file with retries and returns its size.
func (s *Shipper) uploadFile(ctx context.Context, src, dst string) (int64, error) {
	var size int64
	err := s.retry(ctx, func() error {
		f, err := os.Open(src)
		if err != nil {
			return backoffStop{fmt.Errorf("open %s: %w", src, err)}
		}
		defer func() { _ = f.Close() }()
		fi, err := f.Stat()
		if err != nil {
			return backoffStop{fmt.Errorf("stat %s: %w", src, err)}
		}
		size = fi.Size()
		if err := s.bkt.Upload(ctx, dst, f, objstore.WithContentType("application/octet-stream")); err != nil {
			return fmt.Errorf("upload %s: %w", dst, err)
		}
		return nil
	})
	return size, err
}

// backoffStop marks an error that retrying cannot fix.
type backoffStop struct{ error }

func (b backoffStop) Unwrap() error { return b.error }

// retry calls fn until it succeeds, the attempts are used up or ctx ends,
// sleeping with exponential backoff between tries: object stores fail
// transiently, and one hiccup should not cost a whole block.
func (s *Shipper) retry(ctx context.Context, fn func() error) error {
	wait := s.opts.backoff
	var err error
	for attempt := 1; ; attempt++ {
		if err = fn(); err == nil {
			return nil
		}
		var stop backoffStop
		if errors.As(err, &stop) || attempt >= s.opts.attempts || ctx.Err() != nil {
			return err
		}
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return err
		case <-t.C:
		}
		wait = min(2*wait, s.opts.maxBackoff)
	}
}

// cleanUp deletes what was uploaded of block id and returns cause. It runs
// without the caller's cancellation: a shutdown must not leave a partial
// block behind if the bucket can still be reached.
func (s *Shipper) cleanUp(id ulid.ULID, cause error) error {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := DeletePrefix(ctx, s.bkt, id.String()+"/"); err != nil {
		s.logger.Error(err, "clean up partial upload; it is retried with the block", "block", id.String())
		return fmt.Errorf("%w (clean-up of the partial upload failed too: %w)", cause, err)
	}
	return cause
}

// DeletePrefix deletes every object below prefix (which ends in "/").
func DeletePrefix(ctx context.Context, bkt objstore.Bucket, prefix string) error {
	var names []string
	if err := bkt.Iter(ctx, prefix, func(name string) error {
		names = append(names, name)
		return nil
	}, objstore.WithRecursiveIter()); err != nil {
		return fmt.Errorf("list %s: %w", prefix, err)
	}
	// meta.json first, so that a reader never sees a block whose files are
	// disappearing underneath a valid meta.json.
	slices.SortStableFunc(names, func(a, b string) int {
		am, bm := filepath.Base(a) == block.MetaFilename, filepath.Base(b) == block.MetaFilename
		switch {
		case am && !bm:
			return -1
		case bm && !am:
			return 1
		}
		return 0
	})
	for _, n := range names {
		if err := bkt.Delete(ctx, n); err != nil && !bkt.IsObjNotFoundErr(err) {
			return fmt.Errorf("delete %s: %w", n, err)
		}
	}
	return nil
}

// hardlinkBlock links the files Thanos uploads (chunk segments and index)
// from src into dst.
func hardlinkBlock(src, dst string) error {
	segs, err := block.SegmentFiles(src)
	if err != nil {
		return err
	}
	for _, seg := range segs {
		rel := filepath.Join(block.ChunksDirname, seg)
		if err := os.Link(filepath.Join(src, rel), filepath.Join(dst, rel)); err != nil {
			return fmt.Errorf("hard link %s: %w", rel, err)
		}
	}
	if err := os.Link(filepath.Join(src, block.IndexFilename), filepath.Join(dst, block.IndexFilename)); err != nil {
		return fmt.Errorf("hard link index: %w", err)
	}
	return nil
}
