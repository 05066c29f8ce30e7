package sidecar_test

import (
	"context"
	"encoding/json"
	"fmt"
	"math"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"
	"time"

	promv1 "github.com/prometheus/client_golang/api/prometheus/v1"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/prometheus/common/model"

	"github.com/stevedore-dev/stevedore/internal/sidecar"
	"github.com/stevedore-dev/stevedore/internal/testserver"
	"github.com/stevedore-dev/stevedore/internal/testutil/blockgen"
)

var testExtLabels = map[string]string{"cluster": "c1", "replica": "r0"}

const ruleFile = `groups:
- name: stevedore-test
  interval: 1s
  rules:
  - record: job:up:sum
    expr: sum by (job) (up)
  - alert: AlwaysFiring
    expr: vector(1) > 0
    labels:
      severity: none
    annotations:
      summary: always firing
`

// promWithBlocks starts Prometheus over a TSDB holding three generated 2h
// blocks that end two hours before now (so they never overlap the head), a
// recording and an alerting rule, and a scrape of itself. It returns the
// Prometheus and the start of the generated data.
func promWithBlocks(t *testing.T, v testserver.PrometheusVersion, ext map[string]string) (*testserver.Prometheus, time.Time) {
	t.Helper()
	dir := t.TempDir()
	base := time.Now().Truncate(2 * time.Hour).Add(-8 * time.Hour)
	for i := range 3 {
		start := base.Add(time.Duration(i) * 2 * time.Hour).UnixMilli()
		if _, err := blockgen.Write(context.Background(), dir, blockgen.Spec{
			// One seed for all blocks keeps the counters continuous across
			// block boundaries: a jump there makes rate() differ between
			// Prometheus 2 (closed range windows) and the Prometheus 3 engine
			// inside the Thanos querier (left-open windows).
			MinTime: start, MaxTime: start + 2*time.Hour.Milliseconds(), Series: 24, Step: 30_000,
			Metrics: []string{"test_metric", "other_metric"}, HistogramSeries: 3,
		}); err != nil {
			t.Fatalf("generate block: %v", err)
		}
	}
	rules := testserver.WriteFile(t, "rules.yml", []byte(ruleFile))
	scrape := fmt.Sprintf("rule_files: [%q]\nscrape_configs:\n- job_name: app\n  scrape_interval: 1s\n  static_configs:\n  - targets: [%q]\n", rules, startApp(t))
	p := testserver.StartPrometheus(t, testserver.PrometheusOptions{
		Version: v, DataDir: dir, ExternalLabels: ext, ScrapeConfigs: scrape,
	})
	return p, base
}

// startApp serves a few metrics for Prometheus to scrape and returns its
// host:port.
func startApp(t *testing.T) string {
	t.Helper()
	reg := prometheus.NewRegistry()
	c := prometheus.NewCounterVec(prometheus.CounterOpts{Name: "app_requests_total", Help: "Requests served."}, []string{"code"})
	reg.MustRegister(c)
	c.WithLabelValues("200").Add(42)
	c.WithLabelValues("500").Add(3)
	srv := httptest.NewServer(promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	t.Cleanup(srv.Close)
	return strings.TrimPrefix(srv.URL, "http://")
}

func TestQuerierThroughSidecar(t *testing.T) {
	skipShort(t)
	for _, pv := range promVersions {
		t.Run(pv.name, func(t *testing.T) {
			prom, base := promWithBlocks(t, pv.version, testExtLabels)
			sc := startSidecar(t, sidecar.Config{PrometheusURL: mustURL(t, prom.URL)})
			q := testserver.StartThanosQuerier(t, []string{sc.GRPCAddr})
			// Prometheus starts scraping a few seconds after start-up; wait
			// until the head has some history.
			direct, viaQ := prom.API(t), q.API(t)
			if err := eventually(30*time.Second, func() error {
				v, _, _, err := direct.Query(context.Background(), "up", time.Now().Add(-3*time.Second))
				if err == nil && len(v.(model.Vector)) == 0 {
					err = fmt.Errorf("no scrape yet")
				}
				return err
			}); err != nil {
				t.Fatal(err)
			}

			eps := q.Endpoints(t)
			if len(eps["sidecar"]) != 1 {
				t.Fatalf("querier endpoints %+v, want one sidecar", eps)
			}
			if ls := eps["sidecar"][0].LabelSets; len(ls) != 1 || ls[0]["cluster"] != "c1" || ls[0]["replica"] != "r0" {
				t.Errorf("sidecar label sets %v", ls)
			}

			ctx := context.Background()
			blockT := base.Add(3*time.Hour + 7*time.Minute)
			headT := time.Now().Add(-2 * time.Second)
			instant := []struct {
				query string
				at    time.Time
			}{
				{`test_metric{job="job-1"}`, blockT},
				{`test_metric{job!="job-1", zone="a"}`, blockT},
				{`test_metric{instance=~"instance-000[0-5]"}`, blockT},
				{`other_metric{instance!~"instance-00(0|1).*"}`, blockT},
				{`rate(test_metric[5m])`, blockT},
				{`sum by (job) (rate(test_metric[5m]))`, blockT},
				{`sum by (zone) (test_metric)`, base.Add(5*time.Hour + 59*time.Minute)},
				{`test_metric{cluster="c1", job="job-2"}`, blockT},
				{`test_metric{cluster="elsewhere"}`, blockT},
				// Native histograms travel as histogram chunks.
				{`histogram_count(test_histogram)`, blockT},
				{`histogram_sum(rate(test_histogram[5m]))`, blockT},
				{`up`, headT},
				{`sum by (code) (app_requests_total)`, headT},
				{`count({__name__=~"app_.*|scrape_.*"})`, headT},
			}
			for _, tc := range instant {
				want, _, _, err := direct.Query(ctx, stripExtMatchers(tc.query), tc.at)
				if err != nil {
					t.Fatalf("prometheus %s: %v", tc.query, err)
				}
				if strings.Contains(tc.query, "elsewhere") {
					want = model.Vector{}
				}
				got, _, _, err := viaQ.Query(ctx, tc.query, tc.at)
				if err != nil {
					t.Fatalf("querier %s: %v", tc.query, err)
				}
				compareVectors(t, tc.query, want.(model.Vector), got.(model.Vector))
			}

			rng := promv1.Range{Start: base.Add(30 * time.Minute), End: base.Add(5*time.Hour + 50*time.Minute), Step: 5 * time.Minute}
			for _, query := range []string{
				`test_metric{job=~"job-[02]", zone!="c"}`,
				`sum by (job) (rate(test_metric[10m]))`,
				`max by (zone) (other_metric)`,
			} {
				want, _, _, err := direct.QueryRange(ctx, query, rng)
				if err != nil {
					t.Fatalf("prometheus %s: %v", query, err)
				}
				got, _, _, err := viaQ.QueryRange(ctx, query, rng)
				if err != nil {
					t.Fatalf("querier %s: %v", query, err)
				}
				compareMatrices(t, query, want.(model.Matrix), got.(model.Matrix))
			}

			// Label names and values: Prometheus's plus the external labels.
			start, end := base, time.Now()
			wantNames, _, _, err := direct.LabelNames(ctx, nil, start, end)
			if err != nil {
				t.Fatal(err)
			}
			wantNames = append(wantNames, "cluster", "replica")
			slices.Sort(wantNames)
			gotNames, _, _, err := viaQ.LabelNames(ctx, nil, start, end)
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(wantNames, gotNames) {
				t.Errorf("label names\n got %v\nwant %v", gotNames, wantNames)
			}
			wantJobs, _, _, err := direct.LabelValues(ctx, "job", nil, start, end)
			if err != nil {
				t.Fatal(err)
			}
			gotJobs, _, _, err := viaQ.LabelValues(ctx, "job", nil, start, end)
			if err != nil || !slices.Equal(wantJobs, gotJobs) {
				t.Errorf("job values %v (%v), want %v", gotJobs, err, wantJobs)
			}
			gotZones, _, _, err := viaQ.LabelValues(ctx, "zone", []string{`test_metric{job="job-1"}`}, start, end)
			wantZones, _, _, _ := direct.LabelValues(ctx, "zone", []string{`test_metric{job="job-1"}`}, start, end)
			if err != nil || !slices.Equal(wantZones, gotZones) {
				t.Errorf("zone values with matcher %v (%v), want %v", gotZones, err, wantZones)
			}
			gotCluster, _, _, err := viaQ.LabelValues(ctx, "cluster", nil, start, end)
			if err != nil || !slices.Equal(gotCluster, model.LabelValues{"c1"}) {
				t.Errorf("cluster values %v (%v)", gotCluster, err)
			}
			// Series (skip_chunks through the querier).
			wantSeries, _, _, err := direct.Series(ctx, []string{`other_metric{zone="b"}`}, start, end)
			if err != nil {
				t.Fatal(err)
			}
			gotSeries, _, _, err := viaQ.Series(ctx, []string{`other_metric{zone="b"}`}, start, end)
			if err != nil || len(gotSeries) != len(wantSeries) || len(wantSeries) == 0 {
				t.Errorf("series: got %d (%v), want %d", len(gotSeries), err, len(wantSeries))
			}
			for _, s := range gotSeries {
				if s["cluster"] != "c1" || s["replica"] != "r0" {
					t.Errorf("series %v lacks external labels", s)
				}
			}

			checkRulesAndTargets(t, q.URL)

			// With a replica label the querier asks the sidecar to drop it
			// (without_replica_labels) and relies on the answer staying sorted.
			qd := testserver.StartThanosQuerier(t, []string{sc.GRPCAddr}, "--query.replica-label=replica")
			for _, query := range []string{`test_metric{zone="b"}`, `{__name__=~"test_metric|other_metric", job="job-3"}`} {
				want, _, _, err := direct.Query(ctx, query, blockT)
				if err != nil {
					t.Fatal(err)
				}
				got, _, _, err := qd.API(t).Query(ctx, query, blockT)
				if err != nil {
					t.Fatalf("dedup querier %s: %v", query, err)
				}
				gv := got.(model.Vector)
				for _, s := range gv {
					if _, ok := s.Metric["replica"]; ok {
						t.Errorf("%s: dedup answer %s keeps the replica label", query, s.Metric)
					}
					s.Metric["replica"] = "r0"
				}
				compareVectors(t, query+" (dedup)", want.(model.Vector), gv)
			}
		})
	}
}

// stripExtMatchers removes matchers on external labels, which Prometheus's
// own API knows nothing about.
func stripExtMatchers(q string) string {
	for _, m := range []string{`cluster="c1", `, `cluster="elsewhere"`} {
		q = strings.ReplaceAll(q, m, "")
	}
	return q
}

// stripExt checks that a querier series that kept its source labels carries
// the external labels, and removes them so that it compares with what
// Prometheus answers directly (aggregations keep only grouping labels).
func stripExt(t *testing.T, query string, m model.Metric) string {
	t.Helper()
	out := m.Clone()
	if hasAny(m, model.MetricNameLabel, "instance") {
		for k, v := range testExtLabels {
			if m[model.LabelName(k)] != model.LabelValue(v) {
				t.Errorf("%s: series %s lacks external label %s=%q", query, m, k, v)
			}
		}
	}
	for k := range testExtLabels {
		delete(out, model.LabelName(k))
	}
	return out.String()
}

func hasAny(m model.Metric, names ...model.LabelName) bool {
	for _, n := range names {
		if _, ok := m[n]; ok {
			return true
		}
	}
	return false
}

func closeEnough(a, b float64) bool {
	if math.IsNaN(a) || math.IsNaN(b) {
		return math.IsNaN(a) && math.IsNaN(b)
	}
	return a == b || math.Abs(a-b) <= 1e-9*math.Max(math.Abs(a), math.Abs(b))
}

func compareVectors(t *testing.T, query string, want, got model.Vector) {
	t.Helper()
	if len(want) != len(got) {
		t.Errorf("%s: querier returned %d series, Prometheus %d\n got %v\nwant %v", query, len(got), len(want), got, want)
		return
	}
	if len(want) == 0 && !strings.Contains(query, "elsewhere") {
		t.Errorf("%s: empty result; the test data should match", query)
	}
	idx := map[string]*model.Sample{}
	for _, s := range got {
		idx[stripExt(t, query, s.Metric)] = s
	}
	for _, w := range want {
		key := w.Metric.String()
		g, ok := idx[key]
		if !ok {
			t.Errorf("%s: series %s missing from the querier answer %v", query, key, got)
			continue
		}
		if !closeEnough(float64(w.Value), float64(g.Value)) || w.Timestamp != g.Timestamp {
			t.Errorf("%s: %s = %v@%v via querier, %v@%v from Prometheus", query, key, g.Value, g.Timestamp, w.Value, w.Timestamp)
		}
	}
}

func compareMatrices(t *testing.T, query string, want, got model.Matrix) {
	t.Helper()
	if len(want) != len(got) || len(want) == 0 {
		t.Errorf("%s: querier returned %d series, Prometheus %d", query, len(got), len(want))
		return
	}
	idx := map[string]*model.SampleStream{}
	for _, s := range got {
		idx[stripExt(t, query, s.Metric)] = s
	}
	for _, w := range want {
		key := w.Metric.String()
		g, ok := idx[key]
		if !ok {
			t.Errorf("%s: series %s missing from the querier answer", query, key)
			continue
		}
		if len(g.Values) != len(w.Values) {
			t.Errorf("%s: %s has %d points via querier, %d from Prometheus", query, key, len(g.Values), len(w.Values))
			continue
		}
		for i := range w.Values {
			if !closeEnough(float64(w.Values[i].Value), float64(g.Values[i].Value)) || w.Values[i].Timestamp != g.Values[i].Timestamp {
				t.Errorf("%s: %s point %d: %v via querier, %v from Prometheus", query, key, i, g.Values[i], w.Values[i])
				break
			}
		}
	}
}

// checkRulesAndTargets reads the querier's rules and targets APIs, which it
// answers from the sidecar's Rules and Targets services.
func checkRulesAndTargets(t *testing.T, querier string) {
	t.Helper()
	var rules struct {
		Data struct {
			Groups []struct {
				Name  string `json:"name"`
				Rules []struct {
					Name   string            `json:"name"`
					Type   string            `json:"type"`
					Labels map[string]string `json:"labels"`
					State  string            `json:"state"`
					Alerts []struct {
						Labels map[string]string `json:"labels"`
					} `json:"alerts"`
				} `json:"rules"`
			} `json:"groups"`
		} `json:"data"`
	}
	if err := eventually(20*time.Second, func() error {
		if err := getJSON(querier+"/api/v1/rules", &rules); err != nil {
			return err
		}
		if len(rules.Data.Groups) != 1 || len(rules.Data.Groups[0].Rules) != 2 {
			return fmt.Errorf("rule groups %+v", rules.Data.Groups)
		}
		for _, r := range rules.Data.Groups[0].Rules {
			if r.Type == "alerting" && (r.State != "firing" || len(r.Alerts) != 1) {
				return fmt.Errorf("alert %+v not firing yet", r)
			}
		}
		return nil
	}); err != nil {
		t.Fatalf("querier rules: %v", err)
	}
	for _, r := range rules.Data.Groups[0].Rules {
		if r.Labels["cluster"] != "c1" {
			t.Errorf("rule %s labels %v lack external labels", r.Name, r.Labels)
		}
		for _, a := range r.Alerts {
			if a.Labels["cluster"] != "c1" || a.Labels["severity"] != "none" {
				t.Errorf("alert labels %v", a.Labels)
			}
		}
	}
	var targets struct {
		Data struct {
			ActiveTargets []struct {
				Labels     map[string]string `json:"labels"`
				Health     string            `json:"health"`
				ScrapePool string            `json:"scrapePool"`
			} `json:"activeTargets"`
		} `json:"data"`
	}
	if err := eventually(20*time.Second, func() error {
		if err := getJSON(querier+"/api/v1/targets", &targets); err != nil {
			return err
		}
		if len(targets.Data.ActiveTargets) != 1 || targets.Data.ActiveTargets[0].Health != "up" {
			return fmt.Errorf("targets %+v", targets.Data.ActiveTargets)
		}
		return nil
	}); err != nil {
		t.Fatalf("querier targets: %v", err)
	}
	tg := targets.Data.ActiveTargets[0]
	if tg.ScrapePool != "app" || tg.Labels["cluster"] != "c1" || tg.Labels["job"] != "app" {
		t.Errorf("target %+v", tg)
	}
	var md struct {
		Data map[string][]struct {
			Type string `json:"type"`
		} `json:"data"`
	}
	if err := eventually(10*time.Second, func() error {
		if err := getJSON(querier+"/api/v1/metadata?metric=app_requests_total", &md); err != nil {
			return err
		}
		if m := md.Data["app_requests_total"]; len(m) == 0 || m[0].Type != "counter" {
			return fmt.Errorf("metadata %+v", md.Data)
		}
		return nil
	}); err != nil {
		t.Errorf("querier metadata: %v", err)
	}
}

func getJSON(u string, out any) error {
	resp, err := http.Get(u)
	if err != nil {
		return err
	}
	defer func() { _ = resp.Body.Close() }()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("GET %s: HTTP %d", u, resp.StatusCode)
	}
	return json.NewDecoder(resp.Body).Decode(out)
}

// TestExemplarsThroughSidecar scrapes an exemplar into Prometheus 3 and reads
// it back through the querier's /api/v1/query_exemplars.
func TestExemplarsThroughSidecar(t *testing.T) {
	skipShort(t)
	reg := prometheus.NewRegistry()
	c := prometheus.NewCounter(prometheus.CounterOpts{Name: "traced_requests_total", Help: "Requests with traces."})
	reg.MustRegister(c)
	c.(prometheus.ExemplarAdder).AddWithExemplar(1, prometheus.Labels{"trace_id": "abc123"})
	srv := httptest.NewServer(promhttp.HandlerFor(reg, promhttp.HandlerOpts{EnableOpenMetrics: true}))
	t.Cleanup(srv.Close)
	scrape := fmt.Sprintf("scrape_configs:\n- job_name: traced\n  scrape_interval: 1s\n  static_configs:\n  - targets: [%q]\n", strings.TrimPrefix(srv.URL, "http://"))
	prom := testserver.StartPrometheus(t, testserver.PrometheusOptions{
		Version: testserver.Prometheus3, ExternalLabels: testExtLabels, ScrapeConfigs: scrape,
		ExtraArgs: []string{"--enable-feature=exemplar-storage"},
	})
	sc := startSidecar(t, sidecar.Config{PrometheusURL: mustURL(t, prom.URL)})
	q := testserver.StartThanosQuerier(t, []string{sc.GRPCAddr})
	var ex struct {
		Data []struct {
			SeriesLabels map[string]string `json:"seriesLabels"`
			Exemplars    []struct {
				Labels map[string]string `json:"labels"`
				Value  string            `json:"value"`
			} `json:"exemplars"`
		} `json:"data"`
	}
	if err := eventually(30*time.Second, func() error {
		now := time.Now()
		u := fmt.Sprintf("%s/api/v1/query_exemplars?query=traced_requests_total&start=%d&end=%d", q.URL, now.Add(-time.Hour).Unix(), now.Unix()+60)
		if err := getJSON(u, &ex); err != nil {
			return err
		}
		if len(ex.Data) != 1 || len(ex.Data[0].Exemplars) == 0 {
			return fmt.Errorf("exemplars %+v", ex.Data)
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	d := ex.Data[0]
	if d.SeriesLabels["cluster"] != "c1" || d.SeriesLabels["job"] != "traced" || d.Exemplars[0].Labels["trace_id"] != "abc123" || d.Exemplars[0].Value != "1" {
		t.Errorf("exemplar data %+v", d)
	}
}
