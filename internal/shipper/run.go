package shipper

import (
	"context"
	"path/filepath"
	"time"

	"github.com/fsnotify/fsnotify"

	"github.com/stevedore-dev/stevedore/internal/block"
)

// Run syncs every interval and, beyond Thanos's periodic scan, as soon as a
// block directory appears in the TSDB directory (Prometheus renames a
// finished block into place, which the watch reports), so blocks reach the
// bucket within seconds. A failed sync is retried with exponential backoff
// from one second up to interval. after, when set, is called after every
// sync. Run returns when ctx is done.
func (s *Shipper) Run(ctx context.Context, interval time.Duration, after func()) error {
	trigger := make(chan struct{}, 1)
	poke := func() {
		select {
		case trigger <- struct{}{}:
		default:
		}
	}
	if w, err := fsnotify.NewWatcher(); err != nil {
		warn(s.logger, "cannot watch the TSDB directory; relying on the periodic scan", "err", err.Error())
	} else if err := w.Add(s.dir); err != nil {
		_ = w.Close()
		warn(s.logger, "cannot watch the TSDB directory; relying on the periodic scan", "dir", s.dir, "err", err.Error())
	} else {
		defer func() { _ = w.Close() }()
		go s.watch(ctx, w, poke)
	}

	backoff := time.Duration(0)
	for {
		if _, err := s.Sync(ctx); err != nil && ctx.Err() == nil {
			s.logger.Error(err, "sync failed; retrying", "in", nextBackoff(backoff, interval).String())
			backoff = nextBackoff(backoff, interval)
		} else {
			backoff = 0
		}
		if after != nil {
			after()
		}
		wait := interval
		if backoff > 0 {
			wait = backoff
		}
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return nil
		case <-t.C:
		case <-trigger:
			t.Stop()
			if backoff > 0 {
				// A new block does not make a broken bucket work again:
				// keep the backoff rather than hammering it.
				select {
				case <-ctx.Done():
					return nil
				case <-time.After(backoff):
				}
			}
		}
	}
}

func nextBackoff(cur, ceiling time.Duration) time.Duration {
	if cur == 0 {
		return min(time.Second, ceiling)
	}
	return min(2*cur, ceiling)
}

// watch pokes on every new block directory until ctx is done.
func (s *Shipper) watch(ctx context.Context, w *fsnotify.Watcher, poke func()) {
	for {
		select {
		case <-ctx.Done():
			return
		case ev, ok := <-w.Events:
			if !ok {
				return
			}
			if ev.Op&(fsnotify.Create|fsnotify.Rename) == 0 {
				continue
			}
			if _, ok := block.IsBlockDir(filepath.Base(ev.Name)); ok {
				s.logger.V(1).Info("new block directory", "dir", ev.Name)
				poke()
			}
		case err, ok := <-w.Errors:
			if !ok {
				return
			}
			// An overflow loses events, not correctness: the periodic scan
			// still finds every block.
			warn(s.logger, "TSDB directory watch error", "err", err.Error())
			poke()
		}
	}
}
