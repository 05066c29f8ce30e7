package sidecar_test

import (
	"slices"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/stevedore-dev/stevedore/internal/sidecar"
	"github.com/stevedore-dev/stevedore/internal/storepb"
	"github.com/stevedore-dev/stevedore/internal/testserver"
)

// TestShardedSeriesLikeThanosSidecar sends the sharded Series requests of
// a query frontend with vertical sharding to our sidecar and to the Thanos
// sidecar on the same Prometheus: each shard must hold the same series, and
// the shards must partition the unsharded answer.
func TestShardedSeriesLikeThanosSidecar(t *testing.T) {
	skipShort(t)
	dir := t.TempDir()
	base := time.Now().Truncate(2 * time.Hour).Add(-8 * time.Hour)
	genBlocks(t, dir, base, 2, 200)
	prom := testserver.StartPrometheus(t, testserver.PrometheusOptions{Version: testserver.Prometheus3, DataDir: dir, ExternalLabels: testExtLabels})
	ours := startSidecar(t, sidecar.Config{PrometheusURL: mustURL(t, prom.URL)})
	theirs := startThanosSidecar(t, prom, nil)
	base0 := &storepb.SeriesRequest{
		MinTime:  base.UnixMilli(),
		MaxTime:  base.Add(4 * time.Hour).UnixMilli(),
		Matchers: []*storepb.LabelMatcher{{Type: storepb.LabelMatcher_RE, Name: "__name__", Value: "test_metric|other_metric"}},
	}
	all := testserver.SeriesLabels(t, ours.GRPCAddr, base0)
	if len(all) == 0 {
		t.Fatal("no series")
	}
	for _, si := range []*storepb.ShardInfo{
		{TotalShards: 3, By: true, Labels: []string{"job"}},
		{TotalShards: 4, By: false, Labels: []string{"instance", "replica"}},
	} {
		seen := map[string]bool{}
		for k := range si.GetTotalShards() {
			req := proto.CloneOf(base0)
			req.ShardInfo = proto.CloneOf(si)
			req.ShardInfo.ShardIndex = k
			got, want := testserver.SeriesLabels(t, ours.GRPCAddr, req), testserver.SeriesLabels(t, theirs, req)
			if !slices.Equal(got, want) {
				t.Fatalf("shard %d of %v: %d series, the Thanos sidecar %d", k, si, len(got), len(want))
			}
			for _, s := range got {
				if seen[s] {
					t.Fatalf("%s in two shards", s)
				}
				seen[s] = true
			}
		}
		if len(seen) != len(all) {
			t.Fatalf("shards of %v hold %d series, the unsharded answer %d", si, len(seen), len(all))
		}
	}
}
