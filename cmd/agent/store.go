package main

import (
	"context"
	"fmt"
	"io"
	"time"

	"github.com/stevedore-dev/stevedore/internal/server"
	"github.com/stevedore-dev/stevedore/internal/storegw"
	"github.com/stevedore-dev/stevedore/internal/version"
)

func runStore(ctx context.Context, args []string, stderr io.Writer) error {
	fs := newFlagSet("store", stderr)
	var (
		common commonFlags
		obj    objstoreFlags
		cfg    storegw.Config
	)
	common.register(fs)
	obj.register(fs)
	fs.StringVar(&cfg.DataDir, "data-dir", "./data", "Local directory for index-headers and cached metas.")
	fs.DurationVar(&cfg.SyncInterval, "sync-block-duration", 3*time.Minute, "Interval between bucket syncs.")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if common.showVersion {
		_, _ = fmt.Fprintf(stderr, "agent %s\n", version.Get())
		return nil
	}
	var err error
	if cfg.ObjstoreConfig, err = obj.load(); err != nil {
		return usageError{err}
	}
	logger, reg, err := newRuntime(&common, stderr, "store")
	if err != nil {
		return err
	}
	g, err := storegw.New(logger, reg, cfg)
	if err != nil {
		return usageError{err}
	}
	return serve(ctx, logger, reg, &common, server.NewProber(), g)
}
