package testserver

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	promv1 "github.com/prometheus/client_golang/api/prometheus/v1"
)

// ThanosQuerier is a real `thanos query` pointed at StoreAPI endpoints.
type ThanosQuerier struct {
	URL      string // HTTP API base, http://127.0.0.1:port
	GRPCAddr string
	proc     *Process
}

// StartThanosQuerier starts `thanos query` with each endpoint as --endpoint
// and waits until all of them are connected.
func StartThanosQuerier(t testing.TB, endpoints []string, extraArgs ...string) *ThanosQuerier {
	t.Helper()
	httpPort, grpcPort := FreePort(t), FreePort(t)
	q := &ThanosQuerier{URL: "http://" + Addr(httpPort), GRPCAddr: Addr(grpcPort)}
	args := []string{"query",
		"--http-address=" + Addr(httpPort),
		"--grpc-address=" + q.GRPCAddr,
		"--endpoint.info-timeout=5s",
		"--query.timeout=2m",
		"--log.level=info",
	}
	for _, e := range endpoints {
		args = append(args, "--endpoint="+e)
	}
	args = append(args, extraArgs...)
	q.proc = Start(t, "thanos-query", Binary(t, EnvThanos), args)
	q.proc.WaitHTTP(t, q.URL+"/-/ready", 60*time.Second)
	q.WaitEndpoints(t, len(endpoints), 60*time.Second)
	return q
}

// API returns a Prometheus HTTP API client of the querier.
func (q *ThanosQuerier) API(t testing.TB) promv1.API { return newAPI(t, q.URL) }

// Process is the running querier process.
func (q *ThanosQuerier) Process() *Process { return q.proc }

// EndpointStatus is one entry of the querier's /api/v1/stores answer.
type EndpointStatus struct {
	Name      string              `json:"name"`
	LastError *string             `json:"lastError"`
	LabelSets []map[string]string `json:"labelSets"`
	MinTime   int64               `json:"minTime"`
	MaxTime   int64               `json:"maxTime"`
}

// Endpoints returns the querier's view of its endpoints, keyed by component type.
func (q *ThanosQuerier) Endpoints(t testing.TB) map[string][]EndpointStatus {
	t.Helper()
	eps, err := q.endpoints()
	if err != nil {
		t.Fatalf("querier endpoints: %v", err)
	}
	return eps
}

func (q *ThanosQuerier) endpoints() (map[string][]EndpointStatus, error) {
	resp, err := http.Get(q.URL + "/api/v1/stores")
	if err != nil {
		return nil, err
	}
	defer func() { _ = resp.Body.Close() }()
	var body struct {
		Data map[string][]EndpointStatus `json:"data"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&body); err != nil {
		return nil, fmt.Errorf("decode /api/v1/stores: %w", err)
	}
	return body.Data, nil
}

// WaitEndpoints waits until n endpoints are connected without error.
func (q *ThanosQuerier) WaitEndpoints(t testing.TB, n int, timeout time.Duration) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	var last map[string][]EndpointStatus
	for time.Now().Before(deadline) {
		eps, err := q.endpoints()
		if err == nil {
			last = eps
			healthy := 0
			for _, list := range eps {
				for _, e := range list {
					if e.LastError == nil {
						healthy++
					}
				}
			}
			if healthy >= n {
				return
			}
		}
		if q.proc.Exited() {
			break
		}
		time.Sleep(200 * time.Millisecond)
	}
	t.Fatalf("thanos query: want %d healthy endpoints, have %+v\nlog:\n%s", n, last, q.proc.LogTail(30))
}

// ThanosStore is a real `thanos store` serving a bucket.
type ThanosStore struct {
	URL      string
	GRPCAddr string
	DataDir  string
	proc     *Process
}

// StartThanosStore starts `thanos store` on the bucket described by
// objstoreConfig and waits until its initial sync is done.
func StartThanosStore(t testing.TB, objstoreConfig []byte, extraArgs ...string) *ThanosStore {
	t.Helper()
	httpPort, grpcPort := FreePort(t), FreePort(t)
	s := &ThanosStore{URL: "http://" + Addr(httpPort), GRPCAddr: Addr(grpcPort), DataDir: t.TempDir()}
	args := append([]string{"store",
		"--http-address=" + Addr(httpPort),
		"--grpc-address=" + s.GRPCAddr,
		"--data-dir=" + s.DataDir,
		"--objstore.config=" + string(objstoreConfig),
	}, extraArgs...)
	s.proc = Start(t, "thanos-store", Binary(t, EnvThanos), args)
	s.proc.WaitHTTP(t, s.URL+"/-/ready", 120*time.Second)
	return s
}

// Process is the running store process.
func (s *ThanosStore) Process() *Process { return s.proc }

// RunThanos runs a one-shot thanos command (e.g. `tools bucket verify`) and
// returns its combined output.
func RunThanos(t testing.TB, timeout time.Duration, args ...string) (string, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	out, err := exec.CommandContext(ctx, Binary(t, EnvThanos), args...).CombinedOutput()
	return string(out), err
}

// WriteFile writes data into a new file in the test's temp dir and returns its path.
func WriteFile(t testing.TB, name string, data []byte) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(p, data, 0o644); err != nil {
		t.Fatalf("write %s: %v", p, err)
	}
	return p
}

func waitTCP(t testing.TB, p *Process, addr string, timeout time.Duration) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err == nil {
			_ = c.Close()
			return
		}
		if p.Exited() {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("%s did not listen on %s within %s\nlog:\n%s", p.Name, addr, timeout, p.LogTail(30))
}
