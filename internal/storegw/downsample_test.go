package storegw_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stevedore-dev/stevedore/internal/block"
	"github.com/stevedore-dev/stevedore/internal/testserver"
	"github.com/stevedore-dev/stevedore/internal/testutil/blockgen"
)

// TestDownsampledAgainstThanos serves a raw 48h block and the 5m block that
// a real `thanos tools bucket downsample` makes of it. Thanos queriers over
// `thanos store` and over `agent store` must answer alike at raw and at 5m
// resolution, and the 5m answers must come from the downsampled block.
func TestDownsampledAgainstThanos(t *testing.T) {
	if testing.Short() {
		t.Skip("starts MinIO and Thanos")
	}
	ctx := context.Background()
	mi := testserver.StartMinIO(t)
	tb := &testBucket{bkt: mi.Bucket(t, "downsampled"), objstoreConfig: mi.ObjstoreConfig("downsampled")}
	now := time.Now().UnixMilli()
	tb.base = (now - 72*hourMs) / (2 * hourMs) * (2 * hourMs)
	dir := t.TempDir()
	id, err := blockgen.Write(ctx, dir, blockgen.Spec{
		MinTime: tb.base, MaxTime: tb.base + 48*hourMs, Step: 60_000,
		Series: 40, Metrics: []string{"http_requests_total"}, Seed: 3,
	})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := blockgen.SetThanosMeta(dir, id, map[string]string{"cluster": "ds"}, block.SourceCompactor); err != nil {
		t.Fatal(err)
	}
	if err := blockgen.Upload(ctx, tb.bkt, dir, id); err != nil {
		t.Fatal(err)
	}

	// Thanos downsamples blocks spanning over 40h to 5m resolution.
	httpAddr := testserver.Addr(testserver.FreePort(t))
	ds := testserver.Start(t, "thanos-downsample", testserver.Binary(t, testserver.EnvThanos), []string{
		"tools", "bucket", "downsample", "--objstore.config=" + string(tb.objstoreConfig),
		"--data-dir=" + t.TempDir(), "--http-address=" + httpAddr,
	})
	deadline := time.Now().Add(2 * time.Minute)
	for !hasResolution(t, tb, 300_000) {
		if time.Now().After(deadline) || ds.Exited() {
			t.Fatalf("no 5m block after 2 minutes:\n%s", ds.LogTail(30))
		}
		time.Sleep(500 * time.Millisecond)
	}
	ds.Stop()

	thanosStore := testserver.StartThanosStore(t, tb.objstoreConfig)
	a := startAgent(t, tb, nil)
	if n := a.gw.Store().Status().BlocksLoaded; n != 2 {
		t.Fatalf("agent loaded %d blocks, want the raw one and the 5m one", n)
	}
	qThanos := testserver.StartThanosQuerier(t, []string{thanosStore.GRPCAddr})
	qAgent := testserver.StartThanosQuerier(t, []string{a.grpcAddr})

	start, end := tb.base+2*hourMs, tb.base+46*hourMs
	queries := []string{
		`sum by (job) (rate(http_requests_total[30m]))`,
		`count_over_time(http_requests_total{job="job-1"}[1h])`,
		`max_over_time(http_requests_total{instance="instance-0003"}[1h])`,
		`min by (zone) (min_over_time(http_requests_total[1h]))`,
		`avg(http_requests_total)`,
		`sum(increase(http_requests_total{zone="b"}[2h]))`,
	}
	answers := map[string]map[string]string{}
	for _, res := range []string{"0s", "5m"} {
		for _, q := range queries {
			want := queryRange(t, qThanos.URL, q, start, end, res)
			got := queryRange(t, qAgent.URL, q, start, end, res)
			if got != want {
				t.Errorf("%s at max_source_resolution=%s:\n agent  %.300s\n thanos %.300s", q, res, got, want)
			}
			if answers[q] == nil {
				answers[q] = map[string]string{}
			}
			answers[q][res] = got
		}
	}
	// count_over_time sees 12 samples an hour in the 5m block, 60 in the raw one.
	q := queries[1]
	if answers[q]["0s"] == answers[q]["5m"] || !strings.Contains(answers[q]["5m"], `"12"`) {
		t.Errorf("the 5m answer does not come from the downsampled block:\n raw %.200s\n 5m  %.200s", answers[q]["0s"], answers[q]["5m"])
	}
}

func hasResolution(t *testing.T, tb *testBucket, res int64) bool {
	t.Helper()
	found := false
	err := tb.bkt.Iter(context.Background(), "", func(name string) error {
		if !strings.HasSuffix(name, "/") {
			return nil
		}
		rc, err := tb.bkt.Get(context.Background(), name+block.MetaFilename)
		if err != nil {
			return nil // Not uploaded completely yet.
		}
		defer rc.Close()
		var m block.Meta
		if json.NewDecoder(rc).Decode(&m) == nil && m.Thanos.Downsample.Resolution == res {
			found = true
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return found
}

// queryRange returns the data of a range query, asking for the resolution.
func queryRange(t *testing.T, base, query string, start, end int64, res string) string {
	t.Helper()
	v := url.Values{
		"query": {query}, "start": {strconv.FormatInt(start/1000, 10)}, "end": {strconv.FormatInt(end/1000, 10)},
		"step": {"1800"}, "max_source_resolution": {res}, "dedup": {"true"},
	}
	resp, err := http.Get(base + "/api/v1/query_range?" + v.Encode())
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	var r struct {
		Status string          `json:"status"`
		Data   json.RawMessage `json:"data"`
		Error  string          `json:"error"`
	}
	if err := json.Unmarshal(body, &r); err != nil || r.Status != "success" {
		t.Fatalf("%s (resolution %s): %s %s", query, res, r.Error, fmt.Sprint(err))
	}
	return string(r.Data)
}
