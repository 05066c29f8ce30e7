package storepb

import (
	"fmt"
	"testing"

	"github.com/prometheus/prometheus/model/labels"
)

// TestShardMatcher checks that every series lands in exactly one shard, that
// "by" depends only on the listed labels and "without" ignores them. That the
// hash is Thanos's is checked against a real Thanos store in
// internal/storegw's TestAgainstThanos.
func TestShardMatcher(t *testing.T) {
	if m := NewShardMatcher(nil); m != nil || !m.Matches(labels.FromStrings("a", "b")) {
		t.Fatal("an unsharded request must match everything")
	}
	if m := NewShardMatcher(&ShardInfo{TotalShards: 0}); m != nil {
		t.Fatal("zero total shards is not sharded")
	}
	var all []labels.Labels
	for i := range 300 {
		all = append(all, labels.FromStrings("__name__", "m", "instance", fmt.Sprintf("i%d", i), "job", fmt.Sprintf("j%d", i%7)))
	}
	for _, by := range []bool{true, false} {
		counts := make([]int, 3)
		shardOfJob := map[string]int{}
		for k := range 3 {
			m := NewShardMatcher(&ShardInfo{ShardIndex: int64(k), TotalShards: 3, By: by, Labels: []string{"job"}})
			for _, lset := range all {
				if !m.Matches(lset) {
					continue
				}
				counts[k]++
				if by {
					if prev, seen := shardOfJob[lset.Get("job")]; seen && prev != k {
						t.Errorf("by job: job %s in shards %d and %d", lset.Get("job"), prev, k)
					}
					shardOfJob[lset.Get("job")] = k
				}
			}
		}
		if total := counts[0] + counts[1] + counts[2]; total != len(all) {
			t.Errorf("by=%v: shards hold %v series, want %d in all", by, counts, len(all))
		}
		if !by && (counts[0] == 0 || counts[1] == 0 || counts[2] == 0) {
			t.Errorf("without job: %v series per shard, want a spread", counts)
		}
	}
}
