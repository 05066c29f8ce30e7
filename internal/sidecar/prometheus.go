package sidecar

import (
	"context"
	"errors"
	"fmt"
	"math"
	"sync"
	"time"

	"github.com/go-logr/logr"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/prometheus/model/labels"

	"github.com/stevedore-dev/stevedore/internal/promclient"
)

// errNoExternalLabels is returned when Prometheus has no external labels.
// Blocks and series without them cannot be told apart from another
// Prometheus's, so the sidecar refuses to run rather than corrupt the bucket.
var errNoExternalLabels = errors.New("no external labels configured on Prometheus server: uniquely identifying external labels must be configured " +
	"(global.external_labels in prometheus.yml, e.g. cluster and replica); see https://thanos.io/tip/thanos/storage.md#external-labels")

// promState is what the sidecar knows about its Prometheus: external labels,
// version, reachability and the time range it serves. Readers (gRPC handlers,
// the status API) and the prober/heartbeat/shipper loops share it.
type promState struct {
	limitMinTime TimeOrDuration

	mu            sync.RWMutex
	labels        labels.Labels
	version       string
	up            bool
	lastHeartbeat time.Time
	lastErr       error
	// blockMinTime is the oldest local block's MinTime (MinInt64: unknown,
	// serve everything).
	blockMinTime int64
}

func newPromState(limit TimeOrDuration) *promState {
	return &promState{limitMinTime: limit, labels: labels.EmptyLabels(), blockMinTime: math.MinInt64}
}

// Labels returns the current external labels.
func (p *promState) Labels() labels.Labels {
	p.mu.RLock()
	defer p.mu.RUnlock()
	return p.labels
}

// Timestamps returns the time range the sidecar serves: from the oldest local
// block (when the shipper knows it) or --min-time, whichever is later, to the
// end of time (the head keeps growing).
func (p *promState) Timestamps() (int64, int64) {
	p.mu.RLock()
	mint := p.blockMinTime
	p.mu.RUnlock()
	return max(mint, p.limitMinTime.PrometheusTimestamp()), math.MaxInt64
}

func (p *promState) setBlockMinTime(t int64) {
	p.mu.Lock()
	p.blockMinTime = t
	p.mu.Unlock()
}

type promSnapshot struct {
	labels        labels.Labels
	version       string
	up            bool
	lastHeartbeat time.Time
	lastErr       error
}

func (p *promState) snapshot() promSnapshot {
	p.mu.RLock()
	defer p.mu.RUnlock()
	return promSnapshot{p.labels, p.version, p.up, p.lastHeartbeat, p.lastErr}
}

// prober checks Prometheus at start-up and then on a heartbeat.
type prober struct {
	logger  logr.Logger
	client  *promclient.Client
	state   *promState
	metrics *sidecarMetrics
	// retry is the interval between start-up attempts (2 s as in Thanos).
	retry time.Duration
}

// validateFlags checks that Prometheus does not compact its blocks, retrying
// until Prometheus answers. A Prometheus without the flags endpoint only gets
// a warning.
func (p *prober) validateFlags(ctx context.Context, ignoreBlockSize bool) error {
	var flags promclient.Flags
	err := retry(ctx, p.retry, func() error {
		var err error
		flags, err = p.client.Flags(ctx)
		if err != nil && !errors.Is(err, promclient.ErrFlagsNotFound) {
			warn(p.logger, "failed to get Prometheus flags. Is Prometheus running? Retrying", "err", err.Error())
			return err
		}
		if errors.Is(err, promclient.ErrFlagsNotFound) {
			warn(p.logger, "failed to check Prometheus flags, due to potentially older Prometheus. No extra validation is done.", "err", err.Error())
			flags = promclient.Flags{}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("fetch Prometheus flags: %w", err)
	}
	if flags == (promclient.Flags{}) {
		return nil
	}
	if flags.TSDBMinDuration != flags.TSDBMaxDuration {
		if !ignoreBlockSize {
			return fmt.Errorf("found that TSDB Max time is %s and Min time is %s. "+
				"Compaction needs to be disabled (storage.tsdb.min-block-duration = storage.tsdb.max-block-duration)",
				flags.TSDBMaxDuration, flags.TSDBMinDuration)
		}
		warn(p.logger, "flag to ignore Prometheus min/max block duration flags differing is being used. If the upload of a 2h block fails and a Prometheus compaction happens that block may be missing from your Thanos bucket storage.")
	}
	if flags.TSDBMinDuration != 2*time.Hour {
		warn(p.logger, "found that TSDB block time is not 2h. Only 2h block time is recommended.", "block-time", flags.TSDBMinDuration.String())
	}
	return nil
}

// initial waits for Prometheus's version and external labels.
func (p *prober) initial(ctx context.Context) error {
	if err := retry(ctx, p.retry, func() error {
		bi, err := p.client.BuildInfo(ctx)
		if err != nil {
			warn(p.logger, "failed to fetch prometheus version. Is Prometheus running? Retrying", "err", err.Error())
			p.markDown(err)
			return err
		}
		p.state.mu.Lock()
		p.state.version = bi.Version
		p.state.mu.Unlock()
		p.logger.Info("successfully loaded prometheus version", "version", bi.Version)
		return nil
	}); err != nil {
		return fmt.Errorf("get Prometheus version: %w", err)
	}
	if err := retry(ctx, p.retry, func() error {
		if err := p.refreshLabels(ctx); err != nil {
			warn(p.logger, "failed to fetch initial external labels. Is Prometheus running? Retrying", "err", err.Error())
			return err
		}
		return nil
	}); err != nil {
		return fmt.Errorf("initial external labels query: %w", err)
	}
	lset := p.state.Labels()
	if lset.IsEmpty() {
		return errNoExternalLabels
	}
	p.logger.Info("successfully loaded prometheus external labels", "external_labels", lset.String())
	return nil
}

// refreshLabels reads the external labels; it is also the heartbeat.
func (p *prober) refreshLabels(ctx context.Context) error {
	lset, err := p.client.ExternalLabels(ctx)
	if err != nil {
		p.markDown(err)
		return err
	}
	now := time.Now()
	p.state.mu.Lock()
	if !labels.Equal(p.state.labels, lset) && !p.state.labels.IsEmpty() {
		p.logger.Info("external labels changed", "old", p.state.labels.String(), "new", lset.String())
	}
	p.state.labels = lset
	p.state.up = true
	p.state.lastHeartbeat = now
	p.state.lastErr = nil
	p.state.mu.Unlock()
	p.metrics.promUp.Set(1)
	p.metrics.lastHeartbeat.Set(float64(now.UnixNano()) / 1e9)
	return nil
}

func (p *prober) markDown(err error) {
	p.state.mu.Lock()
	p.state.up = false
	p.state.lastErr = err
	p.state.mu.Unlock()
	p.metrics.promUp.Set(0)
}

// heartbeat refreshes the external labels every interval, marking the agent
// not ready while Prometheus does not answer: a querier should not count on
// an endpoint that can only return errors.
func (p *prober) heartbeat(ctx context.Context, interval time.Duration, ready func(error)) {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		hctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		err := p.refreshLabels(hctx)
		cancel()
		if err != nil && ctx.Err() == nil {
			warn(p.logger, "heartbeat failed", "err", err.Error())
		}
		if err == nil && p.state.Labels().IsEmpty() {
			err = errNoExternalLabels
			p.logger.Error(err, "heartbeat: Prometheus lost its external labels")
		}
		ready(err)
	}
}

// retry calls fn every interval until it succeeds or ctx ends.
func retry(ctx context.Context, interval time.Duration, fn func() error) error {
	for {
		err := fn()
		if err == nil {
			return nil
		}
		t := time.NewTimer(interval)
		select {
		case <-ctx.Done():
			t.Stop()
			return fmt.Errorf("%w (last error: %w)", ctx.Err(), err)
		case <-t.C:
		}
	}
}

type sidecarMetrics struct {
	promUp        prometheus.Gauge
	lastHeartbeat prometheus.Gauge
}

func newSidecarMetrics(reg prometheus.Registerer) *sidecarMetrics {
	m := &sidecarMetrics{
		promUp: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "thanos_sidecar_prometheus_up",
			Help: "Boolean indicator whether the sidecar can reach its Prometheus peer.",
		}),
		lastHeartbeat: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "thanos_sidecar_last_heartbeat_success_time_seconds",
			Help: "Timestamp of the last successful heartbeat in seconds.",
		}),
	}
	if reg != nil {
		reg.MustRegister(m.promUp, m.lastHeartbeat)
	}
	return m
}
