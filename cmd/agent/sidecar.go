package main

import (
	"context"
	"fmt"
	"io"
	"net/url"

	"github.com/stevedore-dev/stevedore/internal/server"
	"github.com/stevedore-dev/stevedore/internal/sidecar"
	"github.com/stevedore-dev/stevedore/internal/version"
)

func runSidecar(ctx context.Context, args []string, stderr io.Writer) error {
	fs := newFlagSet("sidecar", stderr)
	var (
		common  commonFlags
		promURL string
		obj     objstoreFlags
		cfg     sidecar.Config
	)
	common.register(fs)
	obj.register(fs)
	fs.StringVar(&promURL, "prometheus.url", "http://localhost:9090", "URL at which to reach Prometheus's API.")
	fs.StringVar(&cfg.TSDBPath, "tsdb.path", "./data", "Data directory of the TSDB.")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if common.showVersion {
		_, _ = fmt.Fprintf(stderr, "agent %s\n", version.Get())
		return nil
	}
	u, err := url.Parse(promURL)
	if err != nil || u.Scheme == "" || u.Host == "" {
		return usageError{fmt.Errorf("--prometheus.url %q: want an absolute URL such as http://localhost:9090", promURL)}
	}
	cfg.PrometheusURL = u
	if cfg.ObjstoreConfig, err = obj.load(); err != nil {
		return usageError{err}
	}
	logger, reg, err := newRuntime(&common, stderr, "sidecar")
	if err != nil {
		return err
	}
	s, err := sidecar.New(logger, reg, cfg)
	if err != nil {
		return usageError{err}
	}
	return serve(ctx, logger, reg, &common, server.NewProber(), s)
}
