package testserver

import (
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/api"
	promv1 "github.com/prometheus/client_golang/api/prometheus/v1"
)

// PrometheusVersion picks the Prometheus binary.
type PrometheusVersion int

// The Prometheus binaries tests can run.
const (
	// Prometheus3 is the 3.x built from the Go module (STEVEDORE_PROMETHEUS).
	Prometheus3 PrometheusVersion = iota
	// Prometheus2 is Debian's 2.42 (STEVEDORE_PROMETHEUS2).
	Prometheus2
)

// PrometheusOptions configure a test Prometheus.
type PrometheusOptions struct {
	Version PrometheusVersion
	// DataDir holds the TSDB; a new temp dir when empty. Put generated blocks
	// in it before starting.
	DataDir string
	// ExternalLabels of the global config.
	ExternalLabels map[string]string
	// ScrapeConfigs is YAML appended after the global section (e.g. a
	// scrape_configs: list); empty means Prometheus scrapes itself.
	ScrapeConfigs string
	// BlockDuration sets min = max block duration (default 2h).
	BlockDuration time.Duration
	// Retention of the TSDB (default 10y, so generated history stays).
	Retention string
	// ExtraArgs are appended to the command line.
	ExtraArgs []string
}

// Prometheus is a running Prometheus server.
type Prometheus struct {
	URL        string // http://127.0.0.1:port
	DataDir    string
	ConfigPath string
	proc       *Process
}

// StartPrometheus starts Prometheus and waits until it is ready.
func StartPrometheus(t testing.TB, opts PrometheusOptions) *Prometheus {
	t.Helper()
	env := EnvPrometheus
	if opts.Version == Prometheus2 {
		env = EnvPrometheus2
	}
	bin := Binary(t, env)
	if opts.DataDir == "" {
		opts.DataDir = t.TempDir()
	}
	if opts.BlockDuration == 0 {
		opts.BlockDuration = 2 * time.Hour
	}
	if opts.Retention == "" {
		opts.Retention = "3650d"
	}
	port := FreePort(t)
	p := &Prometheus{URL: "http://" + Addr(port), DataDir: opts.DataDir}
	p.ConfigPath = filepath.Join(t.TempDir(), "prometheus.yml")
	if err := os.WriteFile(p.ConfigPath, []byte(PrometheusConfig(opts.ExternalLabels, opts.ScrapeConfigs, Addr(port))), 0o644); err != nil {
		t.Fatalf("write prometheus config: %v", err)
	}
	bd := model(opts.BlockDuration)
	args := []string{
		"--config.file=" + p.ConfigPath,
		"--storage.tsdb.path=" + opts.DataDir,
		"--storage.tsdb.retention.time=" + opts.Retention,
		"--storage.tsdb.min-block-duration=" + bd,
		"--storage.tsdb.max-block-duration=" + bd,
		"--web.listen-address=" + Addr(port),
		"--web.enable-lifecycle",
		"--web.enable-admin-api",
	}
	if opts.Version == Prometheus2 {
		// Debian's package points these at /usr/share; 2.42 needs them for the UI only.
		args = append(args, "--web.console.templates=/dev/null", "--web.console.libraries=/dev/null")
	}
	args = append(args, opts.ExtraArgs...)
	p.proc = Start(t, "prometheus", bin, args)
	p.proc.WaitHTTP(t, p.URL+"/-/ready", 90*time.Second)
	return p
}

// PrometheusConfig renders a Prometheus config with external labels; extra is
// appended verbatim, and without it Prometheus scrapes itself at selfAddr.
func PrometheusConfig(external map[string]string, extra, selfAddr string) string {
	var b strings.Builder
	b.WriteString("global:\n  scrape_interval: 5s\n  evaluation_interval: 5s\n")
	if len(external) > 0 {
		b.WriteString("  external_labels:\n")
		keys := make([]string, 0, len(external))
		for k := range external {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		for _, k := range keys {
			fmt.Fprintf(&b, "    %s: %q\n", k, external[k])
		}
	}
	if extra != "" {
		b.WriteString(extra)
		return b.String()
	}
	fmt.Fprintf(&b, "scrape_configs:\n- job_name: prometheus\n  static_configs:\n  - targets: [%q]\n", selfAddr)
	return b.String()
}

// model renders a duration the way Prometheus flags want it (e.g. 2h, 90s).
func model(d time.Duration) string {
	if d%time.Hour == 0 {
		return fmt.Sprintf("%dh", d/time.Hour)
	}
	if d%time.Minute == 0 {
		return fmt.Sprintf("%dm", d/time.Minute)
	}
	return fmt.Sprintf("%ds", d/time.Second)
}

// API returns a client of the Prometheus HTTP API.
func (p *Prometheus) API(t testing.TB) promv1.API { return newAPI(t, p.URL) }

// Process is the running server process.
func (p *Prometheus) Process() *Process { return p.proc }

// Stop stops Prometheus.
func (p *Prometheus) Stop() { p.proc.Stop() }

func newAPI(t testing.TB, url string) promv1.API {
	t.Helper()
	c, err := api.NewClient(api.Config{Address: url})
	if err != nil {
		t.Fatalf("prometheus API client for %s: %v", url, err)
	}
	return promv1.NewAPI(c)
}

// Memcached is a running memcached server.
type Memcached struct {
	Addr string
	proc *Process
}

// StartMemcached starts memcached on a free port.
func StartMemcached(t testing.TB) *Memcached {
	t.Helper()
	port := FreePort(t)
	args := []string{"-l", "127.0.0.1", "-p", fmt.Sprint(port), "-U", "0", "-m", "256", "-I", "16m"}
	if os.Geteuid() == 0 {
		args = append(args, "-u", "root")
	}
	m := &Memcached{Addr: Addr(port)}
	m.proc = Start(t, "memcached", Binary(t, EnvMemcached), args)
	waitTCP(t, m.proc, m.Addr, 20*time.Second)
	return m
}
