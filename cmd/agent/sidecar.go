package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"net/url"
	"strings"
	"time"

	"github.com/stevedore-dev/stevedore/internal/block"
	"github.com/stevedore-dev/stevedore/internal/server"
	"github.com/stevedore-dev/stevedore/internal/sidecar"
	"github.com/stevedore-dev/stevedore/internal/version"
)

// stringsFlag is a repeatable string flag.
type stringsFlag []string

func (s *stringsFlag) String() string     { return strings.Join(*s, ",") }
func (s *stringsFlag) Set(v string) error { *s = append(*s, v); return nil }

func runSidecar(ctx context.Context, args []string, stderr io.Writer) error {
	fs := newFlagSet("sidecar", stderr)
	var (
		common   commonFlags
		promURL  string
		obj      contentFlag
		hashFunc string
		minTime  string
		ruleDirs stringsFlag
		cfg      sidecar.Config
	)
	common.register(fs)
	obj.registerObjstore(fs)
	fs.StringVar(&promURL, "prometheus.url", "http://localhost:9090", "URL at which to reach Prometheus's API.")
	fs.DurationVar(&cfg.PrometheusReadyTimeout, "prometheus.ready_timeout", 10*time.Minute, "Maximum time to wait for the Prometheus instance to start up.")
	fs.DurationVar(&cfg.HeartbeatInterval, "prometheus.get_config_interval", 30*time.Second, "How often to get Prometheus's external labels (the heartbeat).")
	fs.StringVar(&cfg.TSDBPath, "tsdb.path", "./data", "Data directory of the TSDB.")
	fs.BoolVar(&cfg.UploadCompacted, "shipper.upload-compacted", false, "Upload compacted blocks (level > 1) too. Useful when migrating a Prometheus that compacted its blocks.")
	fs.BoolVar(&cfg.IgnoreUnequalBlockSize, "shipper.ignore-unequal-block-size", false, "Start even when Prometheus's min and max block durations differ (local compaction enabled). Blocks may be missed.")
	fs.BoolVar(&cfg.AllowOutOfOrderUpload, "shipper.allow-out-of-order-upload", false, "Go on with newer blocks when one fails to upload; the failed one is retried next round.")
	fs.IntVar(&cfg.UploadConcurrency, "shipper.upload-concurrency", 4, "Number of chunk segment files of one block uploaded at the same time.")
	fs.DurationVar(&cfg.ShipInterval, "shipper.sync-interval", 30*time.Second, "Interval between full scans of --tsdb.path (new blocks are also picked up from a file system watch).")
	fs.StringVar(&hashFunc, "hash-func", "", "Hash function for the files of uploaded blocks, recorded in meta.json: SHA256 or empty for none.")
	fs.StringVar(&minTime, "min-time", "", "Serve only data newer than this: RFC 3339 time or a duration relative to now, such as -2h or -7d.")
	fs.StringVar(&cfg.Reloader.ConfigFile, "reloader.config-file", "", "Prometheus configuration file to watch; Prometheus is reloaded when it changes.")
	fs.StringVar(&cfg.Reloader.ConfigEnvsubstFile, "reloader.config-envsubst-file", "", "Output file for the watched configuration with $(VAR) replaced by environment variables.")
	fs.Var(&ruleDirs, "reloader.rule-dir", "Rule directory to watch (repeatable).")
	fs.DurationVar(&cfg.Reloader.WatchInterval, "reloader.watch-interval", 3*time.Minute, "Interval of the periodic check of watched files.")
	fs.DurationVar(&cfg.Reloader.RetryInterval, "reloader.retry-interval", 5*time.Second, "Wait between attempts of a failed reload.")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if common.showVersion {
		_, _ = fmt.Fprintf(stderr, "agent %s\n", version.Get())
		return nil
	}
	u, err := url.Parse(promURL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return usageError{fmt.Errorf("--prometheus.url %q: want an absolute http(s) URL such as http://localhost:9090", promURL)}
	}
	cfg.PrometheusURL = u
	switch strings.ToUpper(hashFunc) {
	case "":
		cfg.HashFunc = block.HashNone
	case string(block.HashSHA256):
		cfg.HashFunc = block.HashSHA256
	default:
		return usageError{fmt.Errorf("--hash-func %q: want SHA256 or empty", hashFunc)}
	}
	if cfg.MinTime, err = sidecar.ParseTimeOrDuration(minTime); err != nil {
		return usageError{fmt.Errorf("--min-time: %w", err)}
	}
	cfg.Reloader.RuleDirs = ruleDirs
	if cfg.PrometheusReadyTimeout <= 0 {
		return usageError{fmt.Errorf("--prometheus.ready_timeout %s: must be positive", cfg.PrometheusReadyTimeout)}
	}
	if cfg.HeartbeatInterval <= 0 {
		return usageError{fmt.Errorf("--prometheus.get_config_interval %s: must be positive", cfg.HeartbeatInterval)}
	}
	if cfg.ShipInterval <= 0 {
		return usageError{fmt.Errorf("--shipper.sync-interval %s: must be positive", cfg.ShipInterval)}
	}
	if cfg.UploadConcurrency <= 0 {
		return usageError{fmt.Errorf("--shipper.upload-concurrency %d: must be positive", cfg.UploadConcurrency)}
	}
	if cfg.Reloader.WatchInterval <= 0 || cfg.Reloader.RetryInterval <= 0 {
		return usageError{fmt.Errorf("--reloader.watch-interval and --reloader.retry-interval must be positive")}
	}
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

var _ flag.Value = (*stringsFlag)(nil)
