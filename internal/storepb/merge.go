package storepb

import (
	"bytes"
	"container/heap"
	"slices"
)

// SeriesSet iterates series in label order.
type SeriesSet interface {
	Next() bool
	At() *Series
	Err() error
}

type sliceSeriesSet struct {
	series []*Series
	i      int
}

// NewSliceSeriesSet iterates series, which must already be sorted by labels.
func NewSliceSeriesSet(series []*Series) SeriesSet { return &sliceSeriesSet{series: series, i: -1} }

func (s *sliceSeriesSet) Next() bool {
	s.i++
	return s.i < len(s.series)
}
func (s *sliceSeriesSet) At() *Series { return s.series[s.i] }
func (s *sliceSeriesSet) Err() error  { return nil }

// MergeSeriesSets merges sorted series sets into one sorted set. Series with
// equal labels become one series whose chunks are ordered by time, with
// identical chunks (same range and bytes, e.g. from overlapping blocks or
// replicas of one block) kept once.
func MergeSeriesSets(sets ...SeriesSet) SeriesSet {
	switch len(sets) {
	case 0:
		return NewSliceSeriesSet(nil)
	case 1:
		return sets[0]
	}
	return &mergedSeriesSet{sets: sets}
}

type mergedSeriesSet struct {
	sets    []SeriesSet
	h       setHeap
	started bool
	cur     *Series
	err     error
}

func (m *mergedSeriesSet) Next() bool {
	if m.err != nil {
		return false
	}
	if !m.started {
		m.started = true
		for _, s := range m.sets {
			if s.Next() {
				m.h = append(m.h, s)
			} else if err := s.Err(); err != nil {
				m.err = err
				return false
			}
		}
		heap.Init(&m.h)
	}
	if len(m.h) == 0 {
		return false
	}
	// Take every set whose head has the smallest labels.
	first := m.h[0].At()
	merged := &Series{Labels: first.Labels}
	var chunks []*AggrChunk
	for len(m.h) > 0 && CompareLabels(m.h[0].At().GetLabels(), first.GetLabels()) == 0 {
		s := m.h[0]
		chunks = append(chunks, s.At().GetChunks()...)
		if s.Next() {
			heap.Fix(&m.h, 0)
		} else {
			if err := s.Err(); err != nil {
				m.err = err
				return false
			}
			heap.Pop(&m.h)
		}
	}
	merged.Chunks = dedupChunks(chunks)
	m.cur = merged
	return true
}

func (m *mergedSeriesSet) At() *Series { return m.cur }
func (m *mergedSeriesSet) Err() error  { return m.err }

func dedupChunks(chunks []*AggrChunk) []*AggrChunk {
	if len(chunks) < 2 {
		return chunks
	}
	slices.SortStableFunc(chunks, func(a, b *AggrChunk) int {
		if a.MinTime != b.MinTime {
			if a.MinTime < b.MinTime {
				return -1
			}
			return 1
		}
		if a.MaxTime < b.MaxTime {
			return -1
		} else if a.MaxTime > b.MaxTime {
			return 1
		}
		return 0
	})
	out := chunks[:1]
	for _, c := range chunks[1:] {
		last := out[len(out)-1]
		if c.MinTime == last.MinTime && c.MaxTime == last.MaxTime && sameChunk(c.GetRaw(), last.GetRaw()) {
			continue
		}
		out = append(out, c)
	}
	return out
}

func sameChunk(a, b *Chunk) bool {
	if a == nil || b == nil {
		return a == b
	}
	return a.GetType() == b.GetType() && bytes.Equal(a.GetData(), b.GetData())
}

type setHeap []SeriesSet

func (h setHeap) Len() int { return len(h) }
func (h setHeap) Less(i, j int) bool {
	return CompareLabels(h[i].At().GetLabels(), h[j].At().GetLabels()) < 0
}
func (h setHeap) Swap(i, j int) { h[i], h[j] = h[j], h[i] }
func (h *setHeap) Push(x any)   { *h = append(*h, x.(SeriesSet)) }
func (h *setHeap) Pop() any {
	old := *h
	x := old[len(old)-1]
	*h = old[:len(old)-1]
	return x
}

// NewSeriesResponse wraps a series for the Series stream.
func NewSeriesResponse(s *Series) *SeriesResponse {
	return &SeriesResponse{Result: &SeriesResponse_Series{Series: s}}
}

// NewWarnSeriesResponse wraps a warning for the Series stream.
func NewWarnSeriesResponse(warning string) *SeriesResponse {
	return &SeriesResponse{Result: &SeriesResponse_Warning{Warning: warning}}
}
