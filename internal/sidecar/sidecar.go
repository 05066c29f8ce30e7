// Package sidecar is the agent mode that runs next to Prometheus: it probes
// Prometheus, ships finished TSDB blocks to object storage and serves the
// Prometheus data over the Thanos StoreAPI (and the Rules, Targets, Metadata
// and Exemplars APIs).
package sidecar

import (
	"context"
	"errors"
	"fmt"
	"math"
	"net"
	"net/http"
	"time"

	"github.com/go-logr/logr"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/thanos-io/objstore"
	"github.com/thanos-io/objstore/client"
	"golang.org/x/sync/errgroup"
	"google.golang.org/grpc"

	"github.com/stevedore-dev/stevedore/internal/agentstatus"
	"github.com/stevedore-dev/stevedore/internal/exemplarspb"
	"github.com/stevedore-dev/stevedore/internal/infopb"
	"github.com/stevedore-dev/stevedore/internal/metadatapb"
	"github.com/stevedore-dev/stevedore/internal/promclient"
	"github.com/stevedore-dev/stevedore/internal/reloader"
	"github.com/stevedore-dev/stevedore/internal/rulespb"
	"github.com/stevedore-dev/stevedore/internal/server"
	"github.com/stevedore-dev/stevedore/internal/shipper"
	"github.com/stevedore-dev/stevedore/internal/storepb"
	"github.com/stevedore-dev/stevedore/internal/targetspb"
)

// Sidecar is the sidecar component.
type Sidecar struct {
	logger  logr.Logger
	cfg     Config
	start   time.Time
	client  *promclient.Client
	state   *promState
	prober  *prober
	store   *Store
	bkt     objstore.Bucket
	shipper *shipper.Shipper
	reload  *reloader.Reloader
}

// New returns a sidecar for cfg, registering its metrics on reg.
func New(logger logr.Logger, reg prometheus.Registerer, cfg Config) (*Sidecar, error) {
	cfg.setDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	hc := &http.Client{Transport: &http.Transport{
		Proxy:               http.ProxyFromEnvironment,
		DialContext:         (&net.Dialer{Timeout: 5 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
		MaxIdleConns:        100,
		MaxIdleConnsPerHost: 100,
		IdleConnTimeout:     90 * time.Second,
		// Remote read answers are snappy-framed already; gzip on top only
		// costs CPU on both sides of a loopback connection.
		DisableCompression: true,
	}}
	s := &Sidecar{
		logger: logger,
		cfg:    cfg,
		start:  time.Now(),
		client: promclient.New(cfg.PrometheusURL, hc),
		state:  newPromState(cfg.MinTime),
	}
	s.prober = &prober{logger: logger.WithName("prometheus"), client: s.client, state: s.state, metrics: newSidecarMetrics(reg), retry: cfg.StartupRetry}
	s.store = NewStore(reg, s.client, s.state.Labels, s.state.Timestamps)

	if len(cfg.ObjstoreConfig) == 0 {
		logger.Info("no supported bucket was configured, uploads will be disabled")
	} else {
		bkt, err := client.NewBucket(kitLogger{logger.WithName("objstore")}, cfg.ObjstoreConfig, "sidecar", nil)
		if err != nil {
			return nil, fmt.Errorf("create bucket client: %w", err)
		}
		s.bkt = objstore.WrapWithMetrics(bkt, prometheus.WrapRegistererWithPrefix("thanos_", reg), bkt.Name())
		s.shipper = shipper.New(logger, shipper.NewMetrics(reg), cfg.TSDBPath, s.bkt, s.state.Labels,
			shipper.WithUploadCompacted(cfg.UploadCompacted),
			shipper.WithAllowOutOfOrderUpload(cfg.AllowOutOfOrderUpload),
			shipper.WithHashFunc(cfg.HashFunc),
			shipper.WithConcurrency(cfg.UploadConcurrency),
		)
	}
	if cfg.Reloader.Enabled() {
		s.reload = reloader.New(logger, reg, cfg.Reloader, s.client.Reload)
		// Write the substituted config before the agent's HTTP server says
		// it is healthy: in Kubernetes the agent is a native sidecar whose
		// startup probe gates Prometheus, which needs that file to start.
		if err := s.reload.Prime(); err != nil {
			logger.Error(err, "initial config write failed; the reloader keeps retrying")
		}
	}
	return s, nil
}

// RegisterGRPC adds the StoreAPI, Info, Rules, Targets, Metadata and
// Exemplars services.
func (s *Sidecar) RegisterGRPC(g *grpc.Server) {
	storepb.RegisterStoreServer(g, s.store)
	infopb.RegisterInfoServer(g, &infoServer{labels: s.state.Labels, timestamps: s.state.Timestamps})
	rulespb.RegisterRulesServer(g, &rulesServer{client: s.client, labels: s.state.Labels})
	targetspb.RegisterTargetsServer(g, &targetsServer{client: s.client, labels: s.state.Labels})
	metadatapb.RegisterMetadataServer(g, &metadataServer{client: s.client})
	exemplarspb.RegisterExemplarsServer(g, &exemplarsServer{client: s.client, labels: s.state.Labels})
}

// RegisterHTTP adds sidecar endpoints (none beyond the shared ones).
func (s *Sidecar) RegisterHTTP(*server.HTTP) {}

// Status reports the sidecar's state for the operator.
func (s *Sidecar) Status() agentstatus.Status {
	p := s.state.snapshot()
	mint, maxt := s.state.Timestamps()
	st := &agentstatus.SidecarStatus{
		PrometheusURL:       s.cfg.PrometheusURL.String(),
		PrometheusReachable: p.up,
		PrometheusVersion:   p.version,
		ExternalLabels:      p.labels.Map(),
		UploadsEnabled:      s.shipper != nil,
		MinTime:             mint,
		MaxTime:             maxt,
	}
	if !p.lastHeartbeat.IsZero() {
		t := p.lastHeartbeat
		st.LastHeartbeat = &t
	}
	if p.lastErr != nil {
		st.LastError = "prometheus: " + p.lastErr.Error()
	}
	if s.shipper != nil {
		sh := s.shipper.Status()
		st.Uploaded, st.Pending, st.Failed = int64(sh.Uploaded), int64(sh.Pending), int64(sh.Failed)
		st.LastUploadedBlock = sh.LastUploadedBlock
		if !sh.LastUploadTime.IsZero() {
			t := sh.LastUploadTime
			st.LastUploadTime = &t
		}
		if sh.LastError != "" && st.LastError == "" {
			st.LastError = "shipper: " + sh.LastError
		}
	}
	return agentstatus.Status{Component: agentstatus.ComponentSidecar, StartTime: s.start, Sidecar: st}
}

// Run waits for Prometheus, then keeps the heartbeat, the shipper and the
// reloader going until ctx is done.
func (s *Sidecar) Run(ctx context.Context, pr *server.Prober) error {
	if s.bkt != nil {
		defer func() { _ = s.bkt.Close() }()
	}
	pr.NotReady(errors.New("waiting for Prometheus"))
	g, gctx := errgroup.WithContext(ctx)
	// The reloader runs from the start: a broken configuration may be what
	// keeps Prometheus from answering.
	if s.reload != nil {
		g.Go(func() error { return s.reload.Watch(gctx) })
	}
	g.Go(func() error {
		if err := s.waitForPrometheus(gctx); err != nil {
			if gctx.Err() != nil && ctx.Err() != nil {
				return nil //nolint:nilerr // shutting down while waiting for Prometheus is not a failure
			}
			return err
		}
		pr.Ready()
		if s.shipper != nil {
			g.Go(func() error {
				return s.shipper.Run(gctx, s.cfg.ShipInterval, s.updateTimestamps)
			})
		}
		s.prober.heartbeat(gctx, s.cfg.HeartbeatInterval, func(err error) {
			if err != nil {
				pr.NotReady(fmt.Errorf("prometheus unreachable: %w", err))
				return
			}
			pr.Ready()
		})
		return nil
	})
	return g.Wait()
}

// waitForPrometheus runs the start-up checks within the ready timeout.
func (s *Sidecar) waitForPrometheus(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, s.cfg.PrometheusReadyTimeout)
	defer cancel()
	if s.shipper != nil {
		// Only uploads depend on Prometheus not compacting its blocks.
		if err := s.prober.validateFlags(ctx, s.cfg.IgnoreUnequalBlockSize); err != nil {
			return fmt.Errorf("validate Prometheus flags: %w", err)
		}
	}
	if err := s.prober.initial(ctx); err != nil {
		if errors.Is(err, context.DeadlineExceeded) {
			return fmt.Errorf("prometheus not ready after --prometheus.ready_timeout=%s: %w", s.cfg.PrometheusReadyTimeout, err)
		}
		return err
	}
	return nil
}

// updateTimestamps makes the advertised min time follow the oldest local
// block: older data has been deleted by retention and lives in the bucket,
// where a store gateway serves it.
func (s *Sidecar) updateTimestamps() {
	minTime, _, ok := s.shipper.Timestamps()
	if !ok {
		minTime = math.MinInt64
	}
	s.state.setBlockMinTime(minTime)
}

// Shipper returns the shipper, nil when uploads are disabled (for tests).
func (s *Sidecar) Shipper() *shipper.Shipper { return s.shipper }

// kitLogger adapts logr to the go-kit logger objstore wants.
type kitLogger struct{ l logr.Logger }

func (k kitLogger) Log(kv ...any) error {
	msg := ""
	rest := make([]any, 0, len(kv))
	for i := 0; i+1 < len(kv); i += 2 {
		key := fmt.Sprint(kv[i])
		switch key {
		case "msg":
			msg = fmt.Sprint(kv[i+1])
		case "level":
			// logr has no levels to map onto; the message says enough.
		default:
			rest = append(rest, key, kv[i+1])
		}
	}
	k.l.V(1).Info(msg, rest...)
	return nil
}
