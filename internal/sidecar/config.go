package sidecar

import (
	"errors"
	"fmt"
	"log/slog"
	"math"
	"net/url"
	"strings"
	"time"

	"github.com/go-logr/logr"

	"github.com/stevedore-dev/stevedore/internal/block"
	"github.com/stevedore-dev/stevedore/internal/reloader"
)

// Config is the validated configuration of the sidecar.
type Config struct {
	PrometheusURL *url.URL
	// PrometheusReadyTimeout bounds the wait for Prometheus at start-up.
	PrometheusReadyTimeout time.Duration
	TSDBPath               string
	// ObjstoreConfig is the objstore YAML; empty disables uploads.
	ObjstoreConfig []byte

	UploadCompacted        bool
	IgnoreUnequalBlockSize bool
	AllowOutOfOrderUpload  bool
	HashFunc               block.HashFunc
	// UploadConcurrency bounds concurrent chunk segment uploads per block.
	UploadConcurrency int
	// MinTime limits the data served (and so the advertised min time).
	MinTime TimeOrDuration

	// Intervals; zero means the Thanos default.
	HeartbeatInterval time.Duration // 30s
	ShipInterval      time.Duration // 30s
	StartupRetry      time.Duration // 2s

	// Reloader is used when its ConfigFile or RuleDirs are set.
	Reloader reloader.Config
}

func (c *Config) setDefaults() {
	if c.PrometheusReadyTimeout == 0 {
		c.PrometheusReadyTimeout = 10 * time.Minute
	}
	if c.HeartbeatInterval == 0 {
		c.HeartbeatInterval = 30 * time.Second
	}
	if c.ShipInterval == 0 {
		c.ShipInterval = 30 * time.Second
	}
	if c.StartupRetry == 0 {
		c.StartupRetry = 2 * time.Second
	}
	if c.UploadConcurrency == 0 {
		c.UploadConcurrency = 4
	}
}

// Validate reports the first problem with the configuration.
func (c *Config) Validate() error {
	if c.PrometheusURL == nil {
		return errors.New("--prometheus.url is required")
	}
	if c.PrometheusURL.Scheme != "http" && c.PrometheusURL.Scheme != "https" {
		return fmt.Errorf("--prometheus.url %q: want an http or https URL", c.PrometheusURL)
	}
	if len(c.ObjstoreConfig) > 0 && c.TSDBPath == "" {
		return errors.New("--tsdb.path is required when uploads are enabled")
	}
	if c.HashFunc != block.HashNone && c.HashFunc != block.HashSHA256 {
		return fmt.Errorf("--hash-func %q: want SHA256 or empty", c.HashFunc)
	}
	if c.UploadConcurrency < 0 {
		return fmt.Errorf("--shipper.upload-concurrency %d: must not be negative", c.UploadConcurrency)
	}
	if c.PrometheusReadyTimeout < 0 || c.HeartbeatInterval < 0 || c.ShipInterval < 0 || c.StartupRetry < 0 {
		return errors.New("durations must not be negative")
	}
	return c.Reloader.Validate()
}

// TimeOrDuration is an absolute time or a duration relative to now (as
// Thanos's --min-time: "2006-01-02T15:04:05Z" or "-2h"). The zero value means
// no limit.
type TimeOrDuration struct {
	t   *time.Time
	d   *time.Duration
	now func() time.Time
}

// ParseTimeOrDuration parses an RFC 3339 time or a Prometheus-style duration
// ("-2h", "-7d") relative to now.
func ParseTimeOrDuration(s string) (TimeOrDuration, error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return TimeOrDuration{}, nil
	}
	if t, err := time.Parse(time.RFC3339, s); err == nil {
		return TimeOrDuration{t: &t}, nil
	}
	neg := strings.HasPrefix(s, "-")
	d, err := parsePromDuration(strings.TrimPrefix(s, "-"))
	if err != nil {
		return TimeOrDuration{}, fmt.Errorf("%q is neither an RFC 3339 time nor a duration such as -2h: %w", s, err)
	}
	if neg {
		d = -d
	}
	return TimeOrDuration{d: &d}, nil
}

// PrometheusTimestamp is the limit in Unix ms (MinInt64 when unset).
func (t TimeOrDuration) PrometheusTimestamp() int64 {
	switch {
	case t.t != nil:
		return t.t.UnixMilli()
	case t.d != nil:
		now := time.Now
		if t.now != nil {
			now = t.now
		}
		return now().Add(*t.d).UnixMilli()
	}
	return math.MinInt64
}

// String renders the value as it was given.
func (t TimeOrDuration) String() string {
	switch {
	case t.t != nil:
		return t.t.Format(time.RFC3339)
	case t.d != nil:
		return t.d.String()
	}
	return ""
}

func parsePromDuration(s string) (time.Duration, error) {
	units := []struct {
		suffix string
		d      time.Duration
	}{{"ms", time.Millisecond}, {"y", 365 * 24 * time.Hour}, {"w", 7 * 24 * time.Hour}, {"d", 24 * time.Hour}, {"h", time.Hour}, {"m", time.Minute}, {"s", time.Second}}
	if s == "" {
		return 0, errors.New("empty duration")
	}
	var total time.Duration
	for s != "" {
		i := 0
		for i < len(s) && s[i] >= '0' && s[i] <= '9' {
			i++
		}
		if i == 0 {
			return 0, fmt.Errorf("expected a number at %q", s)
		}
		var n int64
		for _, c := range s[:i] {
			n = n*10 + int64(c-'0')
			if n > math.MaxInt32 {
				return 0, errors.New("duration too large")
			}
		}
		s = s[i:]
		found := false
		for _, u := range units {
			if strings.HasPrefix(s, u.suffix) {
				total += time.Duration(n) * u.d
				s = s[len(u.suffix):]
				found = true
				break
			}
		}
		if !found {
			return 0, fmt.Errorf("unknown unit at %q", s)
		}
	}
	return total, nil
}

// warn logs at warning level; logr has no such level but its slog handler does.
func warn(l logr.Logger, msg string, kv ...any) {
	slog.New(logr.ToSlogHandler(l)).Warn(msg, kv...)
}
