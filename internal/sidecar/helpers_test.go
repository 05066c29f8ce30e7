package sidecar_test

import (
	"context"
	"errors"
	"net/url"
	"os"
	"testing"
	"time"

	"github.com/go-logr/logr"
	"github.com/go-logr/logr/testr"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/stevedore-dev/stevedore/internal/server"
	"github.com/stevedore-dev/stevedore/internal/sidecar"
	"github.com/stevedore-dev/stevedore/internal/testserver"
)

// runningSidecar is an in-process sidecar with its gRPC server.
type runningSidecar struct {
	*sidecar.Sidecar
	GRPCAddr string
	Prober   *server.Prober
	Registry *prometheus.Registry
	done     chan error
}

func testLogger(t testing.TB) logr.Logger {
	if _, bench := t.(*testing.B); bench {
		return logr.Discard()
	}
	v := 0
	if os.Getenv("STEVEDORE_TEST_VERBOSE") != "" {
		v = 1
	}
	return testr.NewWithInterface(t, testr.Options{Verbosity: v})
}

// startSidecar runs a sidecar for cfg with a gRPC server on a free port until
// the test ends, and waits until it is ready (Prometheus probed).
func startSidecar(t testing.TB, cfg sidecar.Config) *runningSidecar {
	t.Helper()
	logger := testLogger(t)
	reg := prometheus.NewRegistry()
	s, err := sidecar.New(logger, reg, cfg)
	if err != nil {
		t.Fatalf("new sidecar: %v", err)
	}
	pr := server.NewProber()
	g, err := server.NewGRPC(logger, "127.0.0.1:0", reg, pr, time.Second, s.RegisterGRPC)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	rs := &runningSidecar{Sidecar: s, GRPCAddr: g.Addr(), Prober: pr, Registry: reg, done: make(chan error, 2)}
	go func() { rs.done <- g.Serve(ctx) }()
	go func() { rs.done <- s.Run(ctx, pr) }()
	t.Cleanup(func() {
		cancel()
		for range 2 {
			select {
			case err := <-rs.done:
				if err != nil {
					t.Errorf("sidecar: %v", err)
				}
			case <-time.After(30 * time.Second):
				t.Error("sidecar did not stop")
				return
			}
		}
	})
	deadline := time.Now().Add(60 * time.Second)
	for {
		if ok, _ := pr.IsReady(); ok {
			return rs
		}
		select {
		case err := <-rs.done:
			t.Fatalf("sidecar stopped before it was ready: %v", err)
		default:
		}
		if time.Now().After(deadline) {
			_, why := pr.IsReady()
			t.Fatalf("sidecar not ready: %v", why)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func mustURL(t testing.TB, s string) *url.URL {
	t.Helper()
	u, err := url.Parse(s)
	if err != nil {
		t.Fatal(err)
	}
	return u
}

// promVersions are the Prometheus builds the integration tests run against.
var promVersions = []struct {
	name    string
	version testserver.PrometheusVersion
}{
	{"prometheus-2.42", testserver.Prometheus2},
	{"prometheus-3", testserver.Prometheus3},
}

func skipShort(t *testing.T) {
	t.Helper()
	if testing.Short() {
		t.Skip("integration test with real servers; skipped with -short")
	}
}

var errTimeout = errors.New("timed out")

// eventually polls cond every 100ms until it returns nil or timeout passes.
func eventually(timeout time.Duration, cond func() error) error {
	deadline := time.Now().Add(timeout)
	for {
		err := cond()
		if err == nil {
			return nil
		}
		if time.Now().After(deadline) {
			return errors.Join(errTimeout, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}
