package memstore_test

import (
	"context"
	"fmt"
	"net"
	"slices"
	"testing"
	"time"

	promv1 "github.com/prometheus/client_golang/api/prometheus/v1"
	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/model/labels"
	"google.golang.org/grpc"

	"github.com/stevedore-dev/stevedore/internal/memstore"
	"github.com/stevedore-dev/stevedore/internal/testserver"
)

// A fixed data set: 3 jobs × 2 instances of a counter, one sample every 15 s
// for an hour, with values chosen so every answer is easy to compute.
var (
	base  = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	step  = 15 * time.Second
	count = 240
)

func counterValue(job, inst, i int) float64 { return float64((job+1)*(inst+1)) * float64(i) }

func dataset() []memstore.Series {
	var out []memstore.Series
	for job := range 3 {
		for inst := range 2 {
			s := memstore.Series{Labels: labels.FromStrings(
				"__name__", "http_requests_total",
				"job", fmt.Sprintf("job%d", job),
				"instance", fmt.Sprintf("host%d:9090", inst),
			)}
			for i := range count {
				s.Samples = append(s.Samples, memstore.Sample{T: base.Add(time.Duration(i) * step).UnixMilli(), V: counterValue(job, inst, i)})
			}
			out = append(out, s)
		}
	}
	return out
}

func serve(t *testing.T, st *memstore.Store) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := grpc.NewServer()
	st.Register(srv)
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(srv.Stop)
	return ln.Addr().String()
}

// TestThanosQuerierSpeaksOurProtocol is the wire-compatibility proof: a real
// `thanos query` discovers the store through thanos.info.Info and answers
// PromQL, label names and label values from what our thanos.Store sends.
func TestThanosQuerierSpeaksOurProtocol(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a real Thanos querier")
	}
	ext := labels.FromStrings("cluster", "eu1")
	addr := serve(t, memstore.New(ext, dataset()))
	q := testserver.StartThanosQuerier(t, []string{addr})
	api := q.API(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()

	eps := q.Endpoints(t)
	if got := eps["store"]; len(got) != 1 || got[0].LabelSets[0]["cluster"] != "eu1" {
		t.Fatalf("querier sees stores %+v, want one store with cluster=eu1", eps)
	}

	at := base.Add(30 * time.Minute) // sample index 120
	t.Run("instant selector with external label", func(t *testing.T) {
		v := query(ctx, t, api, `http_requests_total{job="job1",instance="host1:9090"}`, at)
		want := counterValue(1, 1, 120)
		if len(v) != 1 || float64(v[0].Value) != want || v[0].Metric["cluster"] != "eu1" {
			t.Fatalf("got %v, want one series = %v with cluster=eu1", v, want)
		}
	})
	t.Run("matchers", func(t *testing.T) {
		for _, tc := range []struct {
			expr string
			want int
		}{
			{`http_requests_total{job="job0"}`, 2},
			{`http_requests_total{job!="job0"}`, 4},
			{`http_requests_total{job=~"job(0|2)"}`, 4},
			{`http_requests_total{job!~"job(0|2)",instance=~"host0.*"}`, 1},
			{`http_requests_total{cluster="eu1"}`, 6},
			{`http_requests_total{cluster="us1"}`, 0},
		} {
			if v := query(ctx, t, api, tc.expr, at); len(v) != tc.want {
				t.Errorf("%s: got %d series, want %d: %v", tc.expr, len(v), tc.want, v)
			}
		}
	})
	t.Run("sum by rate", func(t *testing.T) {
		v := query(ctx, t, api, `sum by (job) (rate(http_requests_total[5m]))`, at)
		if len(v) != 3 {
			t.Fatalf("got %v, want 3 jobs", v)
		}
		for _, s := range v {
			job := int(s.Metric["job"][3] - '0')
			// Each instance grows by (job+1)*(inst+1) per 15 s step.
			want := float64((job+1)*1+(job+1)*2) / step.Seconds()
			if diff := float64(s.Value) - want; diff > 1e-9 || diff < -1e-9 {
				t.Errorf("job%d: rate %v, want %v", job, s.Value, want)
			}
		}
	})
	t.Run("range query", func(t *testing.T) {
		r := promv1.Range{Start: base, End: base.Add(59 * time.Minute), Step: time.Minute}
		val, _, _, err := api.QueryRange(ctx, `http_requests_total{job="job2",instance="host0:9090"}`, r)
		if err != nil {
			t.Fatal(err)
		}
		m := val.(model.Matrix)
		if len(m) != 1 || len(m[0].Values) != 60 {
			t.Fatalf("got %v, want one series with 60 points", m)
		}
		for i, p := range m[0].Values {
			if want := counterValue(2, 0, i*4); float64(p.Value) != want {
				t.Fatalf("point %d: got %v, want %v", i, p.Value, want)
			}
		}
	})
	t.Run("label names and values", func(t *testing.T) {
		names, _, _, err := api.LabelNames(ctx, nil, base, base.Add(time.Hour))
		if err != nil {
			t.Fatal(err)
		}
		if want := []string{"__name__", "cluster", "instance", "job"}; !slices.Equal(namesToStrings(names), want) {
			t.Errorf("label names %v, want %v", names, want)
		}
		vals, _, _, err := api.LabelValues(ctx, "job", nil, base, base.Add(time.Hour))
		if err != nil {
			t.Fatal(err)
		}
		if got, want := toStrings(vals), []string{"job0", "job1", "job2"}; !slices.Equal(got, want) {
			t.Errorf("job values %v, want %v", got, want)
		}
		vals, _, _, err = api.LabelValues(ctx, "instance", []string{`{job="job1",instance!="host0:9090"}`}, base, base.Add(time.Hour))
		if err != nil {
			t.Fatal(err)
		}
		if got, want := toStrings(vals), []string{"host1:9090"}; !slices.Equal(got, want) {
			t.Errorf("instance values with matchers %v, want %v", got, want)
		}
	})
}

func query(ctx context.Context, t *testing.T, api promv1.API, expr string, at time.Time) model.Vector {
	t.Helper()
	val, warns, _, err := api.Query(ctx, expr, at)
	if err != nil {
		t.Fatalf("%s: %v", expr, err)
	}
	if len(warns) > 0 {
		t.Fatalf("%s: warnings %v", expr, warns)
	}
	return val.(model.Vector)
}

func toStrings(vs model.LabelValues) []string {
	out := make([]string, len(vs))
	for i, v := range vs {
		out[i] = string(v)
	}
	return out
}

func namesToStrings(ns model.LabelNames) []string {
	out := make([]string, len(ns))
	for i, n := range ns {
		out[i] = string(n)
	}
	return out
}
