package indexheader

import (
	"context"
	"errors"
	"sync"
	"time"

	"github.com/prometheus/prometheus/tsdb/index"
)

var errClosed = errors.New("index-header reader closed")

// LazyReader opens its index-header on first use and closes it again once it
// has been idle for a while (see CloseIfIdle), so that a store gateway with
// many rarely queried blocks does not keep all their sampled offsets in memory.
type LazyReader struct {
	path     string
	sampling int
	onOpen   func(time.Duration)

	mu       sync.Mutex
	r        *BinaryReader
	inUse    int
	lastUsed time.Time
	closed   bool
}

// NewLazyReader returns a reader of the index-header at path, which must exist.
// onOpen, if not nil, is called with the load time of every (re)open.
func NewLazyReader(path string, sampling int, onOpen func(time.Duration)) *LazyReader {
	return &LazyReader{path: path, sampling: sampling, onOpen: onOpen}
}

func (l *LazyReader) acquire() (*BinaryReader, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed {
		return nil, errClosed
	}
	if l.r == nil {
		start := time.Now()
		r, err := Open(l.path, l.sampling)
		if err != nil {
			return nil, err
		}
		if l.onOpen != nil {
			l.onOpen(time.Since(start))
		}
		l.r = r
	}
	l.inUse++
	l.lastUsed = time.Now()
	return l.r, nil
}

func (l *LazyReader) release() {
	l.mu.Lock()
	l.inUse--
	l.mu.Unlock()
}

// Loaded reports whether the index-header is currently open.
func (l *LazyReader) Loaded() bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.r != nil
}

// CloseIfIdle unloads the index-header when it has not been used for idle.
func (l *LazyReader) CloseIfIdle(idle time.Duration) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.r == nil || l.inUse > 0 || time.Since(l.lastUsed) < idle {
		return false
	}
	_ = l.r.Close()
	l.r = nil
	return true
}

// IndexVersion implements Reader.
func (l *LazyReader) IndexVersion() (int, error) {
	r, err := l.acquire()
	if err != nil {
		return 0, err
	}
	defer l.release()
	return r.IndexVersion()
}

// PostingsOffsets implements Reader.
func (l *LazyReader) PostingsOffsets(name string, values ...string) ([]index.Range, error) {
	r, err := l.acquire()
	if err != nil {
		return nil, err
	}
	defer l.release()
	return r.PostingsOffsets(name, values...)
}

// LookupSymbol implements Reader.
func (l *LazyReader) LookupSymbol(ctx context.Context, ref uint32) (string, error) {
	r, err := l.acquire()
	if err != nil {
		return "", err
	}
	defer l.release()
	return r.LookupSymbol(ctx, ref)
}

// LabelValues implements Reader.
func (l *LazyReader) LabelValues(name string) ([]string, error) {
	r, err := l.acquire()
	if err != nil {
		return nil, err
	}
	defer l.release()
	return r.LabelValues(name)
}

// MatchingLabelValues implements Reader.
func (l *LazyReader) MatchingLabelValues(name, prefix string, keep func(string) bool) ([]string, error) {
	r, err := l.acquire()
	if err != nil {
		return nil, err
	}
	defer l.release()
	return r.MatchingLabelValues(name, prefix, keep)
}

// LabelNames implements Reader.
func (l *LazyReader) LabelNames() ([]string, error) {
	r, err := l.acquire()
	if err != nil {
		return nil, err
	}
	defer l.release()
	return r.LabelNames()
}

// Close implements Reader.
func (l *LazyReader) Close() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.closed = true
	if l.r == nil {
		return nil
	}
	err := l.r.Close()
	l.r = nil
	return err
}
