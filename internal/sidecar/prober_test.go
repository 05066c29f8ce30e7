package sidecar_test

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/stevedore-dev/stevedore/internal/server"
	"github.com/stevedore-dev/stevedore/internal/sidecar"
	"github.com/stevedore-dev/stevedore/internal/testserver"
)

// startRawPrometheus runs Prometheus 2.42 with the given config and extra
// flags, for set-ups the testserver options don't cover.
func startRawPrometheus(t *testing.T, config string, flags ...string) string {
	t.Helper()
	cfg := testserver.WriteFile(t, "prometheus.yml", []byte(config))
	addr := testserver.Addr(testserver.FreePort(t))
	return startPrometheusAt(t, addr, cfg, t.TempDir(), flags...)
}

func startPrometheusAt(t *testing.T, addr, configPath, dataDir string, flags ...string) string {
	t.Helper()
	args := append([]string{
		"--config.file=" + configPath,
		"--storage.tsdb.path=" + dataDir,
		"--web.listen-address=" + addr,
		"--web.console.templates=/dev/null", "--web.console.libraries=/dev/null",
	}, flags...)
	p := testserver.Start(t, "prometheus", testserver.Binary(t, testserver.EnvPrometheus2), args)
	p.WaitHTTP(t, "http://"+addr+"/-/ready", 60*time.Second)
	return "http://" + addr
}

// restartPrometheusOn starts Prometheus again on the address, config and
// data of a stopped one.
func restartPrometheusOn(t *testing.T, p *testserver.Prometheus) {
	t.Helper()
	startPrometheusAt(t, strings.TrimPrefix(p.URL, "http://"), p.ConfigPath, p.DataDir,
		"--storage.tsdb.min-block-duration=2h", "--storage.tsdb.max-block-duration=2h")
}

// metricValue reads a gauge or counter from the sidecar's registry.
func metricValue(t *testing.T, sc *runningSidecar, name string) float64 {
	t.Helper()
	mfs, err := sc.Registry.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		m := mf.GetMetric()[0]
		if g := m.GetGauge(); g != nil {
			return g.GetValue()
		}
		return m.GetCounter().GetValue()
	}
	t.Fatalf("metric %s not registered", name)
	return 0
}

func fsObjstore(t *testing.T) []byte {
	return fmt.Appendf(nil, "type: FILESYSTEM\nconfig:\n  directory: %s\n", t.TempDir())
}

// TestStartupChecks runs the sidecar's start-up against Prometheus servers
// that are misconfigured in the ways the sidecar must refuse or warn about.
func TestStartupChecks(t *testing.T) {
	skipShort(t)
	const withLabels = "global:\n  external_labels:\n    cluster: c1\n"
	for _, tc := range []struct {
		name    string
		config  string
		flags   []string
		uploads bool
		ignore  bool
		wantErr string
	}{
		{
			name:    "no external labels",
			config:  "global:\n  scrape_interval: 5s\n",
			wantErr: "no external labels configured on Prometheus server",
		},
		{
			name:    "compaction enabled refuses uploads",
			config:  withLabels,
			flags:   []string{"--storage.tsdb.min-block-duration=2h", "--storage.tsdb.max-block-duration=6h"},
			uploads: true,
			wantErr: "Compaction needs to be disabled (storage.tsdb.min-block-duration = storage.tsdb.max-block-duration)",
		},
		{
			name:    "compaction enabled is fine with the ignore flag",
			config:  withLabels,
			flags:   []string{"--storage.tsdb.min-block-duration=2h", "--storage.tsdb.max-block-duration=6h"},
			uploads: true,
			ignore:  true,
		},
		{
			name:   "compaction enabled does not matter without uploads",
			config: withLabels,
			flags:  []string{"--storage.tsdb.min-block-duration=2h", "--storage.tsdb.max-block-duration=6h"},
		},
		{
			name:    "1h blocks only warn",
			config:  withLabels,
			flags:   []string{"--storage.tsdb.min-block-duration=1h", "--storage.tsdb.max-block-duration=1h"},
			uploads: true,
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			url := startRawPrometheus(t, tc.config, tc.flags...)
			cfg := sidecar.Config{PrometheusURL: mustURL(t, url), IgnoreUnequalBlockSize: tc.ignore, TSDBPath: t.TempDir()}
			if tc.uploads {
				cfg.ObjstoreConfig = fsObjstore(t)
			}
			s, err := sidecar.New(testLogger(t), nil, cfg)
			if err != nil {
				t.Fatal(err)
			}
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			pr := server.NewProber()
			err = s.Run(ctx, pr)
			if tc.wantErr == "" {
				if err != nil {
					t.Fatalf("run: %v", err)
				}
				if ok, _ := pr.IsReady(); !ok {
					t.Error("not ready with a healthy Prometheus")
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Fatalf("run error %v, want %q", err, tc.wantErr)
			}
		})
	}
}

// TestReadinessFollowsPrometheus stops Prometheus under a running sidecar:
// the heartbeat marks the sidecar not ready and Prometheus down, and both
// recover when Prometheus is back.
func TestReadinessFollowsPrometheus(t *testing.T) {
	skipShort(t)
	dir := t.TempDir()
	prom := testserver.StartPrometheus(t, testserver.PrometheusOptions{Version: testserver.Prometheus2, DataDir: dir, ExternalLabels: testExtLabels})
	sc := startSidecar(t, sidecar.Config{PrometheusURL: mustURL(t, prom.URL), HeartbeatInterval: 200 * time.Millisecond})
	if v := metricValue(t, sc, "thanos_sidecar_prometheus_up"); v != 1 {
		t.Errorf("prometheus_up %v, want 1", v)
	}
	prom.Stop()
	if err := eventually(10*time.Second, func() error {
		if ok, _ := sc.Prober.IsReady(); ok {
			return fmt.Errorf("still ready")
		}
		if st := sc.Status().Sidecar; st.PrometheusReachable || st.LastError == "" {
			return fmt.Errorf("status %+v", st)
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if v := metricValue(t, sc, "thanos_sidecar_prometheus_up"); v != 0 {
		t.Errorf("prometheus_up %v, want 0", v)
	}
	restartPrometheusOn(t, prom)
	if err := eventually(20*time.Second, func() error {
		if ok, why := sc.Prober.IsReady(); !ok {
			return why
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
}
