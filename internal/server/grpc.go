package server

import (
	"context"
	"fmt"
	"net"
	"time"

	"github.com/go-logr/logr"
	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/keepalive"
	"google.golang.org/grpc/status"

	"github.com/stevedore-dev/stevedore/internal/storepb"
)

// GRPC serves the StoreAPI and Info services with the standard gRPC health service.
type GRPC struct {
	logger logr.Logger
	srv    *grpc.Server
	ln     net.Listener
	grace  time.Duration
}

// NewGRPC listens on addr and lets register add the component's services.
// The health service reports SERVING exactly while prober is ready.
func NewGRPC(logger logr.Logger, addr string, reg prometheus.Registerer, prober *Prober, grace time.Duration, register func(*grpc.Server)) (*GRPC, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("listen for gRPC on %s: %w", addr, err)
	}
	m := newGRPCMetrics(reg)
	srv := grpc.NewServer(
		// The store gateway sends pre-encoded Series responses.
		storepb.ServerCodec(),
		grpc.MaxRecvMsgSize(32<<20),
		// Series answers run to gigabytes: fewer, larger writes.
		grpc.WriteBufferSize(256<<10),
		grpc.KeepaliveEnforcementPolicy(keepalive.EnforcementPolicy{MinTime: 5 * time.Second, PermitWithoutStream: true}),
		grpc.ChainUnaryInterceptor(m.unary),
		grpc.ChainStreamInterceptor(m.stream),
	)
	hs := health.NewServer()
	healthpb.RegisterHealthServer(srv, hs)
	prober.OnReadyChange(func(ready bool) {
		st := healthpb.HealthCheckResponse_NOT_SERVING
		if ready {
			st = healthpb.HealthCheckResponse_SERVING
		}
		hs.SetServingStatus("", st)
	})
	register(srv)
	return &GRPC{logger: logger.WithName("grpc"), srv: srv, ln: ln, grace: grace}, nil
}

// Addr is the address the server listens on.
func (g *GRPC) Addr() string { return g.ln.Addr().String() }

// Serve serves until ctx is done, then stops gracefully within the grace period.
func (g *GRPC) Serve(ctx context.Context) error {
	errc := make(chan error, 1)
	go func() { errc <- g.srv.Serve(g.ln) }()
	g.logger.Info("listening", "address", g.Addr())
	select {
	case err := <-errc:
		return fmt.Errorf("serve gRPC: %w", err)
	case <-ctx.Done():
	}
	done := make(chan struct{})
	go func() { g.srv.GracefulStop(); close(done) }()
	select {
	case <-done:
	case <-time.After(g.grace):
		g.srv.Stop()
	}
	return nil
}

type grpcMetrics struct {
	handled  *prometheus.CounterVec
	duration *prometheus.HistogramVec
}

// newGRPCMetrics uses the metric names of go-grpc-prometheus, which Thanos
// dashboards expect.
func newGRPCMetrics(reg prometheus.Registerer) *grpcMetrics {
	m := &grpcMetrics{
		handled: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "grpc_server_handled_total",
			Help: "Total number of RPCs completed on the server, regardless of success or failure.",
		}, []string{"grpc_type", "grpc_service", "grpc_method", "grpc_code"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "grpc_server_handling_seconds",
			Help:    "Histogram of response latency (seconds) of gRPC that had been application-level handled by the server.",
			Buckets: []float64{0.001, 0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60},
		}, []string{"grpc_type", "grpc_service", "grpc_method"}),
	}
	if reg != nil {
		reg.MustRegister(m.handled, m.duration)
	}
	return m
}

func (m *grpcMetrics) observe(kind, fullMethod string, start time.Time, err error) {
	service, method := splitMethod(fullMethod)
	m.handled.WithLabelValues(kind, service, method, status.Code(err).String()).Inc()
	m.duration.WithLabelValues(kind, service, method).Observe(time.Since(start).Seconds())
}

func (m *grpcMetrics) unary(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
	start := time.Now()
	resp, err := handler(ctx, req)
	m.observe("unary", info.FullMethod, start, err)
	return resp, err
}

func (m *grpcMetrics) stream(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
	start := time.Now()
	err := handler(srv, ss)
	m.observe("server_stream", info.FullMethod, start, err)
	return err
}

func splitMethod(full string) (service, method string) {
	if len(full) > 0 && full[0] == '/' {
		full = full[1:]
	}
	for i := len(full) - 1; i >= 0; i-- {
		if full[i] == '/' {
			return full[:i], full[i+1:]
		}
	}
	return "unknown", full
}
