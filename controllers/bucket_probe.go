package controllers

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"sync"
	"time"

	"github.com/go-kit/log"
	objstoreclient "github.com/thanos-io/objstore/client"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/event"
)

// probeResult is the outcome of one reachability probe of a rendered config.
type probeResult struct {
	ConfigHash string
	Err        error
	Time       time.Time
}

// bucketProber probes buckets in the background so that a reconcile never
// waits for a slow or unreachable provider (an S3 client retries for a long
// time). A finished probe enqueues its Bucket through events.
type bucketProber struct {
	metrics *metrics
	events  chan event.GenericEvent

	mu      sync.Mutex
	entries map[types.UID]*probeEntry
}

type probeEntry struct {
	last     *probeResult
	inflight string // config hash being probed
}

func newBucketProber(m *metrics) *bucketProber {
	return &bucketProber{metrics: m, events: make(chan event.GenericEvent, 256), entries: map[types.UID]*probeEntry{}}
}

// probeRequest is what to probe.
type probeRequest struct {
	owner      client.Object
	configHash string
	config     []byte
	write      bool
	timeout    time.Duration
	interval   time.Duration
}

// result returns the last probe result for the request's config hash (nil
// when there is none yet) and starts a probe when there is no result for that
// hash or the last one is older than the interval. The returned duration says
// when the next probe is due.
func (p *bucketProber) result(req probeRequest) (*probeResult, time.Duration) {
	p.mu.Lock()
	defer p.mu.Unlock()
	e := p.entries[req.owner.GetUID()]
	if e == nil {
		e = &probeEntry{}
		p.entries[req.owner.GetUID()] = e
	}
	var res *probeResult
	if e.last != nil && e.last.ConfigHash == req.configHash {
		res = e.last
	}
	due := res == nil || time.Since(res.Time) >= req.interval
	if due && e.inflight != req.configHash {
		e.inflight = req.configHash
		// The reconcile goes on using its object; the probe gets its own copy.
		req.owner = req.owner.DeepCopyObject().(client.Object)
		go p.probe(req)
	}
	if res == nil {
		return nil, req.interval
	}
	return res, max(req.interval-time.Since(res.Time), time.Second)
}

// forget drops the results of a deleted Bucket.
func (p *bucketProber) forget(uid types.UID) {
	p.mu.Lock()
	delete(p.entries, uid)
	p.mu.Unlock()
}

func (p *bucketProber) probe(req probeRequest) {
	ctx, cancel := context.WithTimeout(context.Background(), req.timeout)
	defer cancel()
	start := time.Now()
	err := probeBucket(ctx, req.config, req.write, string(req.owner.GetUID()))
	p.metrics.probeDur.Observe(time.Since(start).Seconds())
	result := "success"
	if err != nil {
		result = "error"
	}
	p.metrics.probes.WithLabelValues(result).Inc()

	p.mu.Lock()
	e := p.entries[req.owner.GetUID()]
	if e == nil { // forgotten meanwhile
		p.mu.Unlock()
		return
	}
	if e.inflight == req.configHash {
		e.inflight = ""
	}
	e.last = &probeResult{ConfigHash: req.configHash, Err: err, Time: time.Now()}
	p.mu.Unlock()
	select {
	case p.events <- event.GenericEvent{Object: req.owner}:
	default:
	}
}

var errStopIter = errors.New("stop")

// probeBucket lists the bucket and, with write, also writes, reads back and
// deletes a small object, using the same objstore client as the agents.
func probeBucket(ctx context.Context, config []byte, write bool, id string) (err error) {
	bkt, err := objstoreclient.NewBucket(log.NewNopLogger(), config, "stevedore-operator", nil)
	if err != nil {
		return err
	}
	defer func() { _ = bkt.Close() }()
	// Listing the top level proves the bucket exists and the credentials may read.
	if err := bkt.Iter(ctx, "", func(string) error { return errStopIter }); err != nil && !errors.Is(err, errStopIter) {
		return fmt.Errorf("list: %w", err)
	}
	if ctx.Err() != nil {
		return fmt.Errorf("list: %w", ctx.Err())
	}
	if !write {
		return nil
	}
	name := "stevedore-probe/" + id
	payload := []byte("stevedore reachability probe " + time.Now().UTC().Format(time.RFC3339))
	if err := bkt.Upload(ctx, name, bytes.NewReader(payload)); err != nil {
		return fmt.Errorf("write probe object: %w", err)
	}
	rc, err := bkt.Get(ctx, name)
	if err != nil {
		return fmt.Errorf("read probe object: %w", err)
	}
	got, err := io.ReadAll(rc)
	_ = rc.Close()
	if err != nil {
		return fmt.Errorf("read probe object: %w", err)
	}
	if !bytes.Equal(got, payload) {
		return fmt.Errorf("read probe object: got %d bytes that differ from the %d written", len(got), len(payload))
	}
	if err := bkt.Delete(ctx, name); err != nil {
		return fmt.Errorf("delete probe object: %w", err)
	}
	return nil
}
