package bucketstore

import (
	"slices"
	"testing"

	"github.com/prometheus/prometheus/model/labels"
	"google.golang.org/protobuf/proto"

	"github.com/stevedore-dev/stevedore/internal/storepb"
)

type testSeries struct {
	name   string
	chunks []int64 // min times; a chunk covers [t, t+9] and holds the byte t
}

// testBatch encodes series as a block streams them: chunks in one buffer.
func testBatch(series ...testSeries) *wireBatch {
	wb := &wireBatch{bufs: [][]byte{nil}}
	for _, s := range series {
		ws := wireSeries{lset: labels.FromStrings("n", s.name), from: int32(len(wb.chunks)), minTime: s.chunks[0], maxTime: s.chunks[len(s.chunks)-1] + 9}
		for _, t := range s.chunks {
			off := len(wb.bufs[0])
			wb.bufs[0] = storepb.AppendSeriesChunk(wb.bufs[0], t, t+9, storepb.Chunk_XOR, []byte{byte(t)}, uint64(t))
			wb.chunks = append(wb.chunks, wireChunk{minTime: t, maxTime: t + 9, off: uint32(off), len: uint32(len(wb.bufs[0]) - off)})
		}
		ws.to = int32(len(wb.chunks))
		wb.series = append(wb.series, ws)
	}
	wb.setSpans()
	return wb
}

func testCursor(batches ...*wireBatch) *blockCursor {
	ch := make(chan wireBatchOrErr, len(batches))
	for _, b := range batches {
		ch <- wireBatchOrErr{batch: b}
	}
	close(ch)
	return &blockCursor{ch: ch}
}

// TestWireMerger merges block streams: sorted by labels, a series' chunks
// ordered by time, and a chunk both blocks hold with the same bytes kept once.
func TestWireMerger(t *testing.T) {
	m := wireMerger{cursors: []*blockCursor{
		testCursor(testBatch(testSeries{"a", []int64{0}}, testSeries{"c", []int64{10}}), testBatch(testSeries{"e", []int64{0}}, testSeries{"f", []int64{20}})),
		testCursor(testBatch(testSeries{"b", []int64{0}}, testSeries{"c", []int64{0, 10}}, testSeries{"d", []int64{0}}, testSeries{"f", []int64{0}})),
		testCursor(),
	}}
	var order []string
	chunks := map[string][]int64{}
	for m.next() {
		name := m.lset.Get("n")
		order = append(order, name)
		var s storepb.Series
		if err := proto.Unmarshal(slices.Concat(m.chunks...), &s); err != nil {
			t.Fatalf("series %s: %v", name, err)
		}
		for _, c := range s.GetChunks() {
			if c.GetRaw().GetData()[0] != byte(c.GetMinTime()) {
				t.Errorf("series %s: chunk at %d holds %v", name, c.GetMinTime(), c.GetRaw().GetData())
			}
			chunks[name] = append(chunks[name], c.GetMinTime())
		}
	}
	if m.err != nil {
		t.Fatal(m.err)
	}
	if want := []string{"a", "b", "c", "d", "e", "f"}; !slices.Equal(order, want) {
		t.Errorf("order %v, want %v", order, want)
	}
	// The chunk at 10 is in both blocks with the same bytes: kept once.
	if want := []int64{0, 10}; !slices.Equal(chunks["c"], want) {
		t.Errorf("chunks of c %v, want %v", chunks["c"], want)
	}
	// Disjoint parts from two blocks are concatenated in time order.
	if want := []int64{0, 20}; !slices.Equal(chunks["f"], want) {
		t.Errorf("chunks of f %v, want %v", chunks["f"], want)
	}
}
