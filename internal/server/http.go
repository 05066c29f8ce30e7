package server

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/pprof"
	"time"

	"github.com/go-logr/logr"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// HTTP serves /-/healthy, /-/ready, /metrics, pprof and whatever the component adds.
type HTTP struct {
	logger logr.Logger
	mux    *http.ServeMux
	srv    *http.Server
	ln     net.Listener
	grace  time.Duration
}

// NewHTTP listens on addr (host:port; port 0 picks a free one).
func NewHTTP(logger logr.Logger, addr string, gatherer prometheus.Gatherer, prober *Prober, grace time.Duration) (*HTTP, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("listen for HTTP on %s: %w", addr, err)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /-/healthy", func(w http.ResponseWriter, _ *http.Request) {
		if ok, why := prober.IsHealthy(); !ok {
			http.Error(w, "unhealthy: "+why.Error(), http.StatusServiceUnavailable)
			return
		}
		_, _ = fmt.Fprintln(w, "OK")
	})
	mux.HandleFunc("GET /-/ready", func(w http.ResponseWriter, _ *http.Request) {
		if ok, why := prober.IsReady(); !ok {
			http.Error(w, "not ready: "+why.Error(), http.StatusServiceUnavailable)
			return
		}
		_, _ = fmt.Fprintln(w, "OK")
	})
	mux.Handle("GET /metrics", promhttp.HandlerFor(gatherer, promhttp.HandlerOpts{}))
	mux.HandleFunc("/debug/pprof/", pprof.Index)
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	h := &HTTP{
		logger: logger.WithName("http"),
		mux:    mux,
		ln:     ln,
		grace:  grace,
		srv:    &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second},
	}
	return h, nil
}

// Handle registers a handler, as http.ServeMux.Handle.
func (h *HTTP) Handle(pattern string, handler http.Handler) { h.mux.Handle(pattern, handler) }

// Addr is the address the server listens on.
func (h *HTTP) Addr() string { return h.ln.Addr().String() }

// Serve serves until ctx is done, then shuts down gracefully.
func (h *HTTP) Serve(ctx context.Context) error {
	errc := make(chan error, 1)
	go func() { errc <- h.srv.Serve(h.ln) }()
	h.logger.Info("listening", "address", h.Addr())
	select {
	case err := <-errc:
		return fmt.Errorf("serve HTTP: %w", err)
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.Background(), h.grace)
	defer cancel()
	if err := h.srv.Shutdown(sctx); err != nil && !errors.Is(err, context.DeadlineExceeded) {
		return fmt.Errorf("shut down HTTP: %w", err)
	}
	return nil
}
