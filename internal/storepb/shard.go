package storepb

import (
	"github.com/cespare/xxhash/v2"
	"github.com/prometheus/prometheus/model/labels"
)

// ShardMatcher selects the series of one shard of a query that the Thanos
// query frontend split by series (vertical sharding). Every store answering
// the query must put a series in the same shard, so the hash is Thanos's:
// xxhash64 of name, 0xff, value, 0xff of each label used, in label order —
// the labels listed ("by") or all but them ("without"), external labels
// included.
//
// A ShardMatcher reuses a buffer: use one per goroutine.
type ShardMatcher struct {
	labels       map[string]struct{}
	by           bool
	total, index uint64
	buf          []byte
}

// NewShardMatcher returns the matcher of si, nil when the query is not sharded.
func NewShardMatcher(si *ShardInfo) *ShardMatcher {
	if si.GetTotalShards() < 1 {
		return nil
	}
	m := &ShardMatcher{labels: make(map[string]struct{}, len(si.GetLabels())), by: si.GetBy(),
		total: uint64(si.GetTotalShards()), index: uint64(si.GetShardIndex())}
	for _, l := range si.GetLabels() {
		m.labels[l] = struct{}{}
	}
	return m
}

// Matches reports whether lset belongs to the shard; a nil matcher matches all.
func (m *ShardMatcher) Matches(lset labels.Labels) bool {
	if m == nil {
		return true
	}
	m.buf = m.buf[:0]
	lset.Range(func(l labels.Label) {
		if _, listed := m.labels[l.Name]; listed == m.by {
			m.buf = append(m.buf, l.Name...)
			m.buf = append(m.buf, 0xff)
			m.buf = append(m.buf, l.Value...)
			m.buf = append(m.buf, 0xff)
		}
	})
	return xxhash.Sum64(m.buf)%m.total == m.index
}

// Clone returns a matcher for another goroutine.
func (m *ShardMatcher) Clone() *ShardMatcher {
	if m == nil {
		return nil
	}
	c := *m
	c.buf = nil
	return &c
}
