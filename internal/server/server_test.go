package server

import (
	"context"
	"errors"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/go-logr/logr"
	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
)

func get(t *testing.T, url string) (int, string) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = resp.Body.Close() }()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func TestProbesFollowProber(t *testing.T) {
	reg := prometheus.NewRegistry()
	prober := NewProber()
	h, err := NewHTTP(logr.Discard(), "127.0.0.1:0", reg, prober, time.Second)
	if err != nil {
		t.Fatal(err)
	}
	g, err := NewGRPC(logr.Discard(), "127.0.0.1:0", reg, prober, time.Second, func(*grpc.Server) {})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error, 2)
	go func() { errc <- h.Serve(ctx) }()
	go func() { errc <- g.Serve(ctx) }()

	base := "http://" + h.Addr()
	conn, err := grpc.NewClient(g.Addr(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = conn.Close() }()
	health := healthpb.NewHealthClient(conn)
	grpcStatus := func() healthpb.HealthCheckResponse_ServingStatus {
		t.Helper()
		resp, err := health.Check(ctx, &healthpb.HealthCheckRequest{})
		if err != nil {
			t.Fatal(err)
		}
		return resp.GetStatus()
	}

	if code, body := get(t, base+"/-/ready"); code != http.StatusServiceUnavailable || !strings.Contains(body, "starting") {
		t.Errorf("ready before start: %d %q", code, body)
	}
	if code, _ := get(t, base+"/-/healthy"); code != http.StatusOK {
		t.Errorf("healthy: %d", code)
	}
	if s := grpcStatus(); s != healthpb.HealthCheckResponse_NOT_SERVING {
		t.Errorf("gRPC health before ready: %v", s)
	}

	prober.Ready()
	if code, _ := get(t, base+"/-/ready"); code != http.StatusOK {
		t.Errorf("ready after Ready(): %d", code)
	}
	if s := grpcStatus(); s != healthpb.HealthCheckResponse_SERVING {
		t.Errorf("gRPC health after ready: %v", s)
	}

	prober.NotReady(errors.New("prometheus unreachable"))
	if code, body := get(t, base+"/-/ready"); code != http.StatusServiceUnavailable || !strings.Contains(body, "prometheus unreachable") {
		t.Errorf("ready after NotReady: %d %q", code, body)
	}

	if code, body := get(t, base+"/metrics"); code != http.StatusOK || !strings.Contains(body, "grpc_server_handled_total") {
		t.Errorf("metrics: %d, want gRPC metrics in %q", code, body)
	}

	cancel()
	for range 2 {
		select {
		case err := <-errc:
			if err != nil {
				t.Errorf("shutdown: %v", err)
			}
		case <-time.After(5 * time.Second):
			t.Fatal("servers did not stop after the context was cancelled")
		}
	}
}
