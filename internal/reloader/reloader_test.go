package reloader

import (
	"context"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/go-logr/logr/testr"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/stevedore-dev/stevedore/internal/promclient"
	"github.com/stevedore-dev/stevedore/internal/testserver"
)

func TestExpandEnv(t *testing.T) {
	env := map[string]string{"A": "1", "B_2": "two", "EMPTY": ""}
	r := &Reloader{getenv: func(k string) (string, bool) { v, ok := env[k]; return v, ok }}
	for _, tc := range []struct {
		in, want string
		wantErr  bool
	}{
		{in: "x: $(A)", want: "x: 1"},
		{in: "x: $(A)-$(B_2) $(EMPTY)|", want: "x: 1-two |"},
		{in: "keep $A and ${A} and $$(A", want: "keep $A and ${A} and $$(A"},
		{in: "x: $(MISSING)", wantErr: true},
	} {
		got, err := r.expandEnv([]byte(tc.in))
		if (err != nil) != tc.wantErr {
			t.Errorf("expandEnv(%q) error %v, want error %v", tc.in, err, tc.wantErr)
			continue
		}
		if !tc.wantErr && string(got) != tc.want {
			t.Errorf("expandEnv(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
}

func TestConfigValidate(t *testing.T) {
	for _, tc := range []struct {
		cfg     Config
		wantErr bool
	}{
		{Config{}, false},
		{Config{ConfigFile: "a.yml", ConfigEnvsubstFile: "b.yml"}, false},
		{Config{ConfigEnvsubstFile: "b.yml"}, true},
		{Config{ConfigFile: "a.yml", ConfigEnvsubstFile: "./a.yml"}, true},
		{Config{RuleDirs: []string{"r"}, WatchInterval: -time.Second}, true},
	} {
		if err := tc.cfg.Validate(); (err != nil) != tc.wantErr {
			t.Errorf("Validate(%+v) = %v, want error %v", tc.cfg, err, tc.wantErr)
		}
	}
}

const tmpl = `global:
  scrape_interval: 5s
  external_labels:
    cluster: "$(STEVEDORE_TEST_CLUSTER)%s"
rule_files: [%q]
`

// TestReloaderWithPrometheus drives a real Prometheus: the template is
// expanded into the file Prometheus reads and Prometheus reloads on every
// change of the template or the rule directory.
func TestReloaderWithPrometheus(t *testing.T) {
	if testing.Short() {
		t.Skip("integration test with a real Prometheus")
	}
	t.Setenv("STEVEDORE_TEST_CLUSTER", "east")
	prom := testserver.StartPrometheus(t, testserver.PrometheusOptions{Version: testserver.Prometheus2, ExternalLabels: map[string]string{"cluster": "initial"}})
	ruleDir := t.TempDir()
	in := filepath.Join(t.TempDir(), "prometheus.yml.tmpl")
	write := func(name, content string) {
		t.Helper()
		if err := os.WriteFile(name, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write(in, fmt.Sprintf(tmpl, "", filepath.Join(ruleDir, "*.yml")))

	u, _ := url.Parse(prom.URL)
	client := promclient.New(u, nil)
	reg := prometheus.NewRegistry()
	r := New(testr.New(t), reg, Config{ConfigFile: in, ConfigEnvsubstFile: prom.ConfigPath, RuleDirs: []string{ruleDir}, RetryInterval: 100 * time.Millisecond}, client.Reload)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error)
	go func() { done <- r.Watch(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("watch: %v", err)
		}
	})

	waitLabel := func(want string) {
		t.Helper()
		deadline := time.Now().Add(20 * time.Second)
		for {
			lset, err := client.ExternalLabels(context.Background())
			if err == nil && lset.Get("cluster") == want {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("cluster label %q (err %v), want %q", lset.Get("cluster"), err, want)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	// The first apply writes a different file than Prometheus loaded: reload.
	waitLabel("east")
	write(in, fmt.Sprintf(tmpl, "-2", filepath.Join(ruleDir, "*.yml")))
	waitLabel("east-2")

	write(filepath.Join(ruleDir, "rules.yml"), "groups:\n- name: added\n  rules:\n  - record: x\n    expr: vector(1)\n")
	deadline := time.Now().Add(20 * time.Second)
	for {
		rd, err := client.Rules(context.Background(), "")
		if err == nil && len(rd.Groups) == 1 && rd.Groups[0].Name == "added" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("rule group not loaded: %+v, %v", rd, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func TestPrimeWritesOutputWithoutReloading(t *testing.T) {
	dir := t.TempDir()
	in, out := filepath.Join(dir, "in.yml"), filepath.Join(dir, "out.yml")
	if err := os.WriteFile(in, []byte("global:\n  external_labels:\n    replica: $(POD_NAME)\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	t.Setenv("POD_NAME", "prom-0")
	reloads := 0
	r := New(testr.New(t), prometheus.NewRegistry(), Config{ConfigFile: in, ConfigEnvsubstFile: out, WatchInterval: time.Minute, RetryInterval: time.Second},
		func(context.Context) error { reloads++; return nil })
	if err := r.Prime(); err != nil {
		t.Fatal(err)
	}
	got, err := os.ReadFile(out)
	if err != nil {
		t.Fatalf("output not written by Prime: %v", err)
	}
	if want := "global:\n  external_labels:\n    replica: prom-0\n"; string(got) != want {
		t.Errorf("output %q, want %q", got, want)
	}
	// The first Watch round sees nothing new: no reload of a Prometheus that
	// started with this very file.
	r.applyAndReload(context.Background(), true)
	if reloads != 0 {
		t.Errorf("%d reloads after Prime, want 0", reloads)
	}
}
