// Package reloader watches a Prometheus configuration file and rule
// directories, optionally expands environment variables into an output file,
// and asks Prometheus to reload when anything changed.
package reloader

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"time"

	"github.com/fsnotify/fsnotify"
	"github.com/go-logr/logr"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/stevedore-dev/stevedore/internal/block"
)

// Config selects what the reloader watches.
type Config struct {
	// ConfigFile is the Prometheus configuration to watch.
	ConfigFile string
	// ConfigEnvsubstFile, when set, receives ConfigFile with $(VAR)
	// references replaced by environment variables; Prometheus reads it.
	ConfigEnvsubstFile string
	// RuleDirs are directories of rule files to watch.
	RuleDirs []string
	// WatchInterval is how often files are checked even without events.
	WatchInterval time.Duration
	// RetryInterval is the wait between failed reload attempts.
	RetryInterval time.Duration
}

// Enabled reports whether there is anything to watch.
func (c Config) Enabled() bool { return c.ConfigFile != "" || len(c.RuleDirs) > 0 }

// Validate reports the first problem with the configuration.
func (c Config) Validate() error {
	if c.ConfigEnvsubstFile != "" && c.ConfigFile == "" {
		return errors.New("--reloader.config-envsubst-file needs --reloader.config-file")
	}
	if c.ConfigEnvsubstFile != "" && filepath.Clean(c.ConfigEnvsubstFile) == filepath.Clean(c.ConfigFile) {
		return errors.New("--reloader.config-envsubst-file must differ from --reloader.config-file")
	}
	if c.WatchInterval < 0 || c.RetryInterval < 0 {
		return errors.New("reloader intervals must not be negative")
	}
	return nil
}

// Reloader watches files and calls reload on change.
type Reloader struct {
	logger  logr.Logger
	cfg     Config
	reload  func(context.Context) error
	metrics *metrics
	getenv  func(string) (string, bool)

	lastHash []byte
}

// New returns a reloader that calls reload (normally POST /-/reload).
func New(logger logr.Logger, reg prometheus.Registerer, cfg Config, reload func(context.Context) error) *Reloader {
	if cfg.WatchInterval == 0 {
		cfg.WatchInterval = 3 * time.Minute
	}
	if cfg.RetryInterval == 0 {
		cfg.RetryInterval = 5 * time.Second
	}
	return &Reloader{
		logger:  logger.WithName("reloader"),
		cfg:     cfg,
		reload:  reload,
		metrics: newMetrics(reg),
		getenv:  os.LookupEnv,
	}
}

// Prime applies the configuration once without asking Prometheus to reload,
// so that the output file exists before Prometheus starts. Watch then only
// reloads when something changes after this.
func (r *Reloader) Prime() error {
	hash, _, err := r.apply()
	if err != nil {
		return err
	}
	r.lastHash = hash
	return nil
}

// Watch applies the configuration once, then on every file event and every
// WatchInterval, until ctx is done.
func (r *Reloader) Watch(ctx context.Context) error {
	w, err := fsnotify.NewWatcher()
	if err != nil {
		return fmt.Errorf("create file watcher: %w", err)
	}
	defer func() { _ = w.Close() }()
	// Watch directories, not files: Kubernetes updates ConfigMap volumes by
	// swapping a symlink, which a watch on the old file never reports.
	var dirs []string
	if r.cfg.ConfigFile != "" {
		dirs = append(dirs, filepath.Dir(r.cfg.ConfigFile))
	}
	dirs = append(dirs, r.cfg.RuleDirs...)
	for _, d := range dirs {
		if err := w.Add(d); err != nil {
			warn(r.logger, "cannot watch directory; relying on the periodic check", "dir", d, "err", err.Error())
			continue
		}
		r.metrics.watches.Inc()
	}
	r.logger.Info("started watching config file and directories for changes", "cfg", r.cfg.ConfigFile, "out", r.cfg.ConfigEnvsubstFile, "dirs", r.cfg.RuleDirs)

	r.applyAndReload(ctx, true)
	tick := time.NewTicker(r.cfg.WatchInterval)
	defer tick.Stop()
	var debounce <-chan time.Time
	for {
		select {
		case <-ctx.Done():
			return nil
		case ev, ok := <-w.Events:
			if !ok {
				return nil
			}
			r.metrics.watchEvents.Inc()
			r.logger.V(1).Info("file event", "name", ev.Name, "op", ev.Op.String())
			// Editors and ConfigMap updates fire bursts of events; apply once.
			debounce = time.After(100 * time.Millisecond)
		case err, ok := <-w.Errors:
			if !ok {
				return nil
			}
			r.metrics.watchErrors.Inc()
			warn(r.logger, "file watch error", "err", err.Error())
		case <-debounce:
			debounce = nil
			r.applyAndReload(ctx, false)
		case <-tick.C:
			r.applyAndReload(ctx, false)
		}
	}
}

// applyAndReload writes the substituted configuration and reloads Prometheus
// when the inputs changed. On start-up the first hash is only recorded,
// unless writing the output changed what Prometheus reads.
func (r *Reloader) applyAndReload(ctx context.Context, initial bool) {
	hash, outChanged, err := r.apply()
	r.metrics.applies.Inc()
	if err != nil {
		r.metrics.applyFailures.Inc()
		r.logger.Error(err, "apply configuration")
		return
	}
	if bytes.Equal(hash, r.lastHash) && !outChanged {
		return
	}
	if initial && !outChanged {
		r.lastHash = hash
		return
	}
	// Retry until the reload succeeds or the next check is due: Prometheus
	// may be restarting; the next check retries with fresh inputs.
	rctx, cancel := context.WithTimeout(ctx, r.cfg.WatchInterval)
	defer cancel()
	for {
		err := r.reload(rctx)
		r.metrics.reloads.Inc()
		if err == nil {
			r.lastHash = hash
			r.metrics.lastReloadOK.Set(1)
			r.metrics.lastReloadTime.SetToCurrentTime()
			r.logger.Info("Prometheus reload triggered", "cfg_in", r.cfg.ConfigFile, "cfg_out", r.cfg.ConfigEnvsubstFile, "rule_dirs", r.cfg.RuleDirs)
			return
		}
		r.metrics.reloadFailures.Inc()
		r.metrics.lastReloadOK.Set(0)
		r.logger.Error(err, "trigger reload; retrying", "in", r.cfg.RetryInterval.String())
		select {
		case <-rctx.Done():
			return
		case <-time.After(r.cfg.RetryInterval):
		}
	}
}

// apply reads the inputs, writes the envsubst output when configured and
// returns a hash of everything Prometheus reads.
func (r *Reloader) apply() (hash []byte, outChanged bool, err error) {
	h := sha256.New()
	if r.cfg.ConfigFile != "" {
		in, err := os.ReadFile(r.cfg.ConfigFile)
		if err != nil {
			return nil, false, fmt.Errorf("read config file: %w", err)
		}
		out := in
		if r.cfg.ConfigEnvsubstFile != "" {
			if out, err = r.expandEnv(in); err != nil {
				return nil, false, fmt.Errorf("expand environment variables in %s: %w", r.cfg.ConfigFile, err)
			}
			old, err := os.ReadFile(r.cfg.ConfigEnvsubstFile)
			if err != nil && !errors.Is(err, fs.ErrNotExist) {
				return nil, false, fmt.Errorf("read %s: %w", r.cfg.ConfigEnvsubstFile, err)
			}
			if !bytes.Equal(old, out) {
				if err := block.WriteFileAtomic(r.cfg.ConfigEnvsubstFile, out); err != nil {
					return nil, false, err
				}
				outChanged = true
			}
		}
		h.Write([]byte(r.cfg.ConfigFile))
		h.Write(out)
	}
	for _, dir := range r.cfg.RuleDirs {
		entries, err := os.ReadDir(dir)
		if err != nil {
			return nil, false, fmt.Errorf("read rule dir: %w", err)
		}
		names := make([]string, 0, len(entries))
		for _, e := range entries {
			names = append(names, e.Name())
		}
		slices.Sort(names)
		for _, n := range names {
			p := filepath.Join(dir, n)
			// Stat follows symlinks (ConfigMap layout); skip directories.
			fi, err := os.Stat(p)
			if err != nil || fi.IsDir() {
				continue
			}
			b, err := os.ReadFile(p)
			if err != nil {
				return nil, false, fmt.Errorf("read rule file: %w", err)
			}
			h.Write([]byte(p))
			h.Write(b)
		}
	}
	return h.Sum(nil), outChanged, nil
}

var envRef = regexp.MustCompile(`\$\(([a-zA-Z_0-9]+)\)`)

// expandEnv replaces $(VAR) with the variable's value; an unset variable is
// an error, so a typo never becomes an empty password silently.
func (r *Reloader) expandEnv(b []byte) ([]byte, error) {
	var missing []string
	out := envRef.ReplaceAllFunc(b, func(ref []byte) []byte {
		name := string(envRef.FindSubmatch(ref)[1])
		v, ok := r.getenv(name)
		if !ok {
			missing = append(missing, name)
			return ref
		}
		return []byte(v)
	})
	if len(missing) > 0 {
		return nil, fmt.Errorf("environment variables not set: %v", missing)
	}
	return out, nil
}

type metrics struct {
	reloads, reloadFailures, applies, applyFailures prometheus.Counter
	watches                                         prometheus.Gauge
	watchEvents, watchErrors                        prometheus.Counter
	lastReloadOK, lastReloadTime                    prometheus.Gauge
}

// newMetrics uses the names the Thanos sidecar exports for its reloader.
func newMetrics(reg prometheus.Registerer) *metrics {
	c := func(name, help string) prometheus.Counter {
		return prometheus.NewCounter(prometheus.CounterOpts{Name: "thanos_sidecar_reloader_" + name, Help: help})
	}
	g := func(name, help string) prometheus.Gauge {
		return prometheus.NewGauge(prometheus.GaugeOpts{Name: "thanos_sidecar_reloader_" + name, Help: help})
	}
	m := &metrics{
		reloads:        c("reloads_total", "Total number of reload requests."),
		reloadFailures: c("reloads_failed_total", "Total number of reload requests that failed."),
		applies:        c("config_apply_operations_total", "Total number of config apply operations."),
		applyFailures:  c("config_apply_operations_failed_total", "Total number of config apply operations that failed."),
		watches:        g("watches", "Number of resources watched by the reloader."),
		watchEvents:    c("watch_events_total", "Total number of events received by the reloader from the watcher."),
		watchErrors:    c("watch_errors_total", "Total number of errors received by the reloader from the watcher."),
		lastReloadOK:   g("last_reload_successful", "Whether the last reload attempt was successful."),
		lastReloadTime: g("last_reload_success_timestamp_seconds", "Timestamp of the last successful reload."),
	}
	if reg != nil {
		reg.MustRegister(m.reloads, m.reloadFailures, m.applies, m.applyFailures, m.watches, m.watchEvents, m.watchErrors, m.lastReloadOK, m.lastReloadTime)
	}
	return m
}

func warn(l logr.Logger, msg string, kv ...any) {
	slog.New(logr.ToSlogHandler(l)).Warn(msg, kv...)
}
