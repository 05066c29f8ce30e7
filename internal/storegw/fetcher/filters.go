package fetcher

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/oklog/ulid/v2"
	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/model/relabel"
	"github.com/thanos-io/objstore"
	"go.yaml.in/yaml/v2"
	"golang.org/x/sync/errgroup"

	"github.com/stevedore-dev/stevedore/internal/block"
)

// BlockIDLabel is the label a relabel selector sees the block ULID as.
const BlockIDLabel = "__block_id"

// TimeOrDuration is an absolute time or a duration relative to now, as
// accepted by --min-time and --max-time ("2024-01-01T00:00:00Z", "-2w").
type TimeOrDuration struct {
	Time *time.Time
	Dur  *model.Duration
	neg  bool
}

// ParseTimeOrDuration parses an RFC3339 time or a (possibly negative) duration.
func ParseTimeOrDuration(s string) (TimeOrDuration, error) {
	if t, err := time.Parse(time.RFC3339, s); err == nil {
		return TimeOrDuration{Time: &t}, nil
	}
	neg := strings.HasPrefix(s, "-")
	d, err := model.ParseDuration(strings.TrimPrefix(s, "-"))
	if err != nil {
		return TimeOrDuration{}, fmt.Errorf("%q is neither an RFC3339 time nor a duration like -2w", s)
	}
	return TimeOrDuration{Dur: &d, neg: neg}, nil
}

// Millis resolves the value to a Unix timestamp in ms at now.
func (t TimeOrDuration) Millis(now time.Time) int64 {
	switch {
	case t.Time != nil:
		return t.Time.UnixMilli()
	case t.Dur != nil:
		d := time.Duration(*t.Dur)
		if t.neg {
			d = -d
		}
		return now.Add(d).UnixMilli()
	}
	return 0
}

func (t TimeOrDuration) String() string {
	switch {
	case t.Time != nil:
		return t.Time.Format(time.RFC3339)
	case t.Dur != nil:
		if t.neg {
			return "-" + t.Dur.String()
		}
		return t.Dur.String()
	}
	return ""
}

// MinTimeUnbounded and MaxTimeUnbounded are the --min-time/--max-time defaults.
var (
	MinTimeUnbounded = mustParseTime("0000-01-01T00:00:00Z")
	MaxTimeUnbounded = mustParseTime("9999-12-31T23:59:59Z")
)

func mustParseTime(s string) TimeOrDuration {
	t, err := ParseTimeOrDuration(s)
	if err != nil {
		panic(err)
	}
	return t
}

// TimePartitionFilter keeps blocks overlapping [MinTime, MaxTime].
type TimePartitionFilter struct {
	MinTime, MaxTime TimeOrDuration
	Now              func() time.Time
}

// Filter implements Filter.
func (f *TimePartitionFilter) Filter(_ context.Context, metas map[ulid.ULID]*block.Meta, counts Counts) error {
	now := time.Now()
	if f.Now != nil {
		now = f.Now()
	}
	minT, maxT := f.MinTime.Millis(now), f.MaxTime.Millis(now)
	for id, m := range metas {
		if m.MaxTime >= minT && m.MinTime <= maxT {
			continue
		}
		counts[StateTimeExcluded]++
		delete(metas, id)
	}
	return nil
}

// selectorActions are the relabel actions that make sense on block labels.
var selectorActions = map[relabel.Action]bool{
	relabel.Keep: true, relabel.Drop: true, relabel.HashMod: true,
	relabel.LabelDrop: true, relabel.LabelKeep: true, relabel.KeepEqual: true, relabel.DropEqual: true,
}

// ParseRelabelConfig parses a --selector.relabel-config YAML list and
// rejects actions that do not select blocks.
func ParseRelabelConfig(b []byte) ([]*relabel.Config, error) {
	var cfgs []*relabel.Config
	if err := yaml.UnmarshalStrict(b, &cfgs); err != nil {
		return nil, fmt.Errorf("parse relabel config: %w", err)
	}
	for i, c := range cfgs {
		if c == nil {
			return nil, fmt.Errorf("relabel config %d is empty", i)
		}
		if err := c.Validate(model.UTF8Validation); err != nil {
			return nil, fmt.Errorf("relabel config %d: %w", i, err)
		}
		if !selectorActions[c.Action] {
			return nil, fmt.Errorf("relabel config %d: action %q is not supported for block selection (use keep, drop, hashmod, labelkeep, labeldrop, keepequal or dropequal)", i, c.Action)
		}
	}
	return cfgs, nil
}

// LabelShardedFilter keeps the blocks whose external labels plus
// __block_id survive the relabel configs: hashmod on __block_id shards a
// bucket across store gateways.
type LabelShardedFilter struct {
	Configs []*relabel.Config
}

// Filter implements Filter.
func (f *LabelShardedFilter) Filter(_ context.Context, metas map[ulid.ULID]*block.Meta, counts Counts) error {
	if len(f.Configs) == 0 {
		return nil
	}
	var b labels.Builder
	for id, m := range metas {
		b.Reset(labels.EmptyLabels())
		b.Set(BlockIDLabel, id.String())
		for k, v := range m.Thanos.Labels {
			b.Set(k, v)
		}
		if keep := relabel.ProcessBuilder(&b, f.Configs...); !keep || b.Labels().IsEmpty() {
			counts[StateLabelExclude]++
			delete(metas, id)
		}
	}
	return nil
}

// ConsistencyDelayFilter hides blocks uploaded less than Delay ago (by upload
// time, or ULID time when unknown) so eventually consistent buckets have
// settled; compactor-made blocks are trusted at once.
type ConsistencyDelayFilter struct {
	Delay time.Duration
	Now   func() time.Time
}

// Filter implements Filter.
func (f *ConsistencyDelayFilter) Filter(_ context.Context, metas map[ulid.ULID]*block.Meta, counts Counts) error {
	now := time.Now()
	if f.Now != nil {
		now = f.Now()
	}
	for id, m := range metas {
		created := m.Thanos.UploadTime
		if created.IsZero() {
			created = ulid.Time(id.Time())
		}
		if now.Sub(created) >= f.Delay {
			continue
		}
		switch m.Thanos.Source {
		case block.SourceCompactor, "bucket.repair", "compactor.repair":
			continue
		}
		counts[StateTooFresh]++
		delete(metas, id)
	}
	return nil
}

// DeletionMarkFilter hides blocks whose deletion-mark.json is older than
// Delay. The delay keeps marked blocks queryable while the compactor's
// replacement block becomes visible everywhere.
type DeletionMarkFilter struct {
	Bkt         objstore.BucketReader
	Delay       time.Duration
	Concurrency int
	Now         func() time.Time

	mu     sync.Mutex
	marked map[ulid.ULID]*block.DeletionMark
}

// Filter implements Filter.
func (f *DeletionMarkFilter) Filter(ctx context.Context, metas map[ulid.ULID]*block.Meta, counts Counts) error {
	now := time.Now()
	if f.Now != nil {
		now = f.Now()
	}
	ids := make(chan ulid.ULID)
	marked := map[ulid.ULID]*block.DeletionMark{}
	var mu sync.Mutex
	g, gctx := errgroup.WithContext(ctx)
	for range max(f.Concurrency, 1) {
		g.Go(func() error {
			for id := range ids {
				m, err := readDeletionMark(gctx, f.Bkt, id)
				if err != nil {
					return err
				}
				if m != nil {
					mu.Lock()
					marked[id] = m
					mu.Unlock()
				}
			}
			return nil
		})
	}
	g.Go(func() error {
		defer close(ids)
		for id := range metas {
			select {
			case ids <- id:
			case <-gctx.Done():
				return gctx.Err()
			}
		}
		return nil
	})
	if err := g.Wait(); err != nil {
		return fmt.Errorf("read deletion marks: %w", err)
	}
	for id, m := range marked {
		if now.Sub(time.Unix(m.DeletionTime, 0)) > f.Delay {
			counts[StateMarked]++
			delete(metas, id)
		}
	}
	f.mu.Lock()
	f.marked = marked
	f.mu.Unlock()
	return nil
}

// Marked returns the deletion marks seen by the last Filter call.
func (f *DeletionMarkFilter) Marked() map[ulid.ULID]*block.DeletionMark {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.marked
}

// readDeletionMark returns nil when the block has no (readable) mark: a
// corrupted mark must not hide a block.
func readDeletionMark(ctx context.Context, bkt objstore.BucketReader, id ulid.ULID) (*block.DeletionMark, error) {
	rc, err := bkt.Get(ctx, block.DeletionMarkObject(id))
	if err != nil {
		if bkt.IsObjNotFoundErr(err) {
			return nil, nil
		}
		return nil, fmt.Errorf("get deletion mark of %s: %w", id, err)
	}
	defer func() { _ = rc.Close() }()
	var m block.DeletionMark
	if err := json.NewDecoder(io.LimitReader(rc, 1<<20)).Decode(&m); err != nil {
		return nil, nil
	}
	if m.Version != block.MarkerVersion1 {
		return nil, nil
	}
	return &m, nil
}

// DeduplicateFilter hides blocks whose sources are all contained in another
// block of the same compaction group (external labels and resolution): the
// compactor has merged them but not deleted them yet.
type DeduplicateFilter struct{}

// Filter implements Filter.
func (DeduplicateFilter) Filter(_ context.Context, metas map[ulid.ULID]*block.Meta, counts Counts) error {
	groups := map[string][]*block.Meta{}
	for _, m := range metas {
		k := groupKey(m)
		groups[k] = append(groups[k], m)
	}
	for _, g := range groups {
		// Largest compactions first, so that they cover their sources.
		sort.Slice(g, func(i, j int) bool {
			li, lj := len(g[i].Compaction.Sources), len(g[j].Compaction.Sources)
			if li != lj {
				return li > lj
			}
			return g[i].ULID.Compare(g[j].ULID) < 0
		})
		var covering []*block.Meta
	next:
		for _, m := range g {
			for _, c := range covering {
				if containsAll(c.Compaction.Sources, m.Compaction.Sources) {
					counts[StateDuplicate]++
					delete(metas, m.ULID)
					continue next
				}
			}
			covering = append(covering, m)
		}
	}
	return nil
}

func groupKey(m *block.Meta) string {
	return fmt.Sprintf("%d@%d", m.Thanos.Downsample.Resolution, labels.FromMap(m.Thanos.Labels).Hash())
}

func containsAll(set, sub []ulid.ULID) bool {
	if len(sub) == 0 {
		return false
	}
	for _, a := range sub {
		found := false
		for _, b := range set {
			if a == b {
				found = true
				break
			}
		}
		if !found {
			return false
		}
	}
	return true
}
