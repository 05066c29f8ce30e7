package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"time"

	"github.com/go-logr/logr"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"golang.org/x/sync/errgroup"
	"google.golang.org/grpc"

	"github.com/stevedore-dev/stevedore/internal/agentstatus"
	"github.com/stevedore-dev/stevedore/internal/logging"
	"github.com/stevedore-dev/stevedore/internal/server"
	"github.com/stevedore-dev/stevedore/internal/version"
)

// commonFlags are shared by every agent command, named as in Thanos.
type commonFlags struct {
	httpAddress string
	grpcAddress string
	gracePeriod time.Duration
	logLevel    string
	logFormat   string
	showVersion bool
}

func (c *commonFlags) register(fs *flag.FlagSet) {
	fs.StringVar(&c.httpAddress, "http-address", "0.0.0.0:10902", "Listen host:port for HTTP endpoints (probes, metrics, status API).")
	fs.StringVar(&c.grpcAddress, "grpc-address", "0.0.0.0:10901", "Listen host:port for the gRPC StoreAPI.")
	fs.DurationVar(&c.gracePeriod, "grace-period", 2*time.Minute, "Time to wait for in-flight requests after SIGTERM.")
	fs.StringVar(&c.logLevel, "log.level", "info", "Log level: debug, info, warn, error.")
	fs.StringVar(&c.logFormat, "log.format", "logfmt", "Log format: logfmt or json.")
	fs.BoolVar(&c.showVersion, "version", false, "Print the version and exit.")
}

// parseFlags parses args into fs, turning flag errors into usage errors.
func parseFlags(fs *flag.FlagSet, args []string) error {
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return err
		}
		return usageError{err}
	}
	if fs.NArg() > 0 {
		return usageError{fmt.Errorf("unexpected arguments %q", fs.Args())}
	}
	return nil
}

func newFlagSet(name string, stderr io.Writer) *flag.FlagSet {
	fs := flag.NewFlagSet("agent "+name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	return fs
}

// component is what the sidecar and store gateway provide to the shared runner.
type component interface {
	// RegisterGRPC adds the component's services (StoreAPI, Info, ...).
	RegisterGRPC(*grpc.Server)
	// RegisterHTTP adds component-specific HTTP endpoints.
	RegisterHTTP(h *server.HTTP)
	// Status is the document served at /api/v1/status.
	Status() agentstatus.Status
	// Run does the component's work until ctx is done, marking prober ready
	// when it can answer queries.
	Run(ctx context.Context, prober *server.Prober) error
}

// newRuntime sets up logging and metrics common to every command.
func newRuntime(c *commonFlags, stderr io.Writer, name string) (logr.Logger, *prometheus.Registry, error) {
	logger, err := logging.New(stderr, logging.Options{Level: c.logLevel, Format: c.logFormat})
	if err != nil {
		return logr.Discard(), nil, usageError{err}
	}
	reg := prometheus.NewRegistry()
	reg.MustRegister(
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name:        "stevedore_build_info",
			Help:        "A metric with a constant '1' value labeled by the agent version and mode.",
			ConstLabels: prometheus.Labels{"version": version.Get(), "component": name},
		}, func() float64 { return 1 }),
	)
	return logger.WithValues("component", name), reg, nil
}

// serve runs the HTTP and gRPC servers and the component until ctx is done
// or one of them fails, then shuts everything down gracefully.
func serve(ctx context.Context, logger logr.Logger, reg *prometheus.Registry, c *commonFlags, prober *server.Prober, comp component) error {
	httpSrv, err := server.NewHTTP(logger, c.httpAddress, reg, prober, c.gracePeriod)
	if err != nil {
		return err
	}
	httpSrv.Handle("GET "+agentstatus.Path, http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		st := comp.Status()
		st.Version = version.Get()
		st.Ready, _ = prober.IsReady()
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(st)
	}))
	comp.RegisterHTTP(httpSrv)
	grpcSrv, err := server.NewGRPC(logger, c.grpcAddress, reg, prober, c.gracePeriod, comp.RegisterGRPC)
	if err != nil {
		return err
	}
	logger.Info("starting agent", "version", version.Get())
	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error { return httpSrv.Serve(gctx) })
	g.Go(func() error { return grpcSrv.Serve(gctx) })
	g.Go(func() error { return comp.Run(gctx, prober) })
	err = g.Wait()
	if ctx.Err() == nil {
		return err // a server or the component stopped on its own
	}
	if err != nil && !errors.Is(err, context.Canceled) {
		logger.Error(err, "error while shutting down")
	}
	logger.Info("shut down", "reason", "signal")
	return nil
}
