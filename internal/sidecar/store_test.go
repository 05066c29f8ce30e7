package sidecar

import (
	"fmt"
	"math/rand"
	"slices"
	"testing"

	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/prompb"

	"github.com/stevedore-dev/stevedore/internal/storepb"
)

// TestOrdererKeepsSeriesSorted feeds series sorted by their own labels, as
// Prometheus answers, and checks that they leave sorted once the external
// labels are added, holding back only prefix runs.
func TestOrdererKeepsSeriesSorted(t *testing.T) {
	for _, tc := range []struct {
		name   string
		ext    labels.Labels
		series []labels.Labels
		// maxHeld is the largest number of series the orderer may hold,
		// counting the one it keeps to see whether the next extends it.
		maxHeld int
	}{
		{
			name: "no prefixes streams one by one",
			ext:  labels.FromStrings("cluster", "a"),
			series: []labels.Labels{
				labels.FromStrings("__name__", "up", "job", "a"),
				labels.FromStrings("__name__", "up", "job", "b"),
				labels.FromStrings("__name__", "x", "job", "a"),
			},
			maxHeld: 2,
		},
		{
			name: "prefix series reorders after an external label sorts in",
			ext:  labels.FromStrings("zone", "eu"),
			series: []labels.Labels{
				labels.FromStrings("__name__", "up"),
				labels.FromStrings("__name__", "up", "instance", "i1"),
				labels.FromStrings("__name__", "up", "instance", "i1", "job", "j"),
				labels.FromStrings("__name__", "up", "instance", "i2"),
				labels.FromStrings("__name__", "x"),
			},
			maxHeld: 5, // every series extends {__name__="up"}
		},
		{
			name: "external label before every series label",
			ext:  labels.FromStrings("a", "1"),
			series: []labels.Labels{
				labels.FromStrings("__name__", "up"),
				labels.FromStrings("__name__", "up", "b", "1"),
			},
			maxHeld: 2,
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var got []labels.Labels
			held, maxHeld := 0, 0
			o := newOrderer(func(s *storepb.Series) error {
				got = append(got, storepb.LabelsFromProto(s.Labels))
				held--
				return nil
			}, false)
			for _, lset := range tc.series {
				final := storepb.WithExternalLabels(lset, tc.ext)
				held++
				maxHeld = max(maxHeld, held)
				if err := o.add(lset, final, &storepb.Series{Labels: storepb.LabelsToProto(final)}); err != nil {
					t.Fatal(err)
				}
			}
			if err := o.flush(); err != nil {
				t.Fatal(err)
			}
			if len(got) != len(tc.series) {
				t.Fatalf("got %d series, want %d", len(got), len(tc.series))
			}
			if !slices.IsSortedFunc(got, labels.Compare) {
				t.Errorf("series not sorted: %v", got)
			}
			if maxHeld > tc.maxHeld {
				t.Errorf("held %d series at once, want at most %d", maxHeld, tc.maxHeld)
			}
		})
	}
}

// TestOrdererRandom checks sortedness on random label sets built to contain
// many prefix relations.
func TestOrdererRandom(t *testing.T) {
	rng := rand.New(rand.NewSource(1))
	names := []string{"__name__", "b", "d", "f", "h"}
	for iter := 0; iter < 200; iter++ {
		ext := labels.FromStrings([]string{"a", "c", "e", "g", "z"}[rng.Intn(5)], "x")
		var in []labels.Labels
		seen := map[string]bool{}
		for i := 0; i < 30; i++ {
			b := labels.NewScratchBuilder(0)
			for _, n := range names[:1+rng.Intn(len(names))] {
				b.Add(n, fmt.Sprint(rng.Intn(2)))
			}
			b.Sort()
			l := b.Labels()
			if !seen[l.String()] {
				seen[l.String()] = true
				in = append(in, l)
			}
		}
		slices.SortFunc(in, labels.Compare)
		var got []labels.Labels
		o := newOrderer(func(s *storepb.Series) error {
			got = append(got, storepb.LabelsFromProto(s.Labels))
			return nil
		}, false)
		for _, l := range in {
			final := storepb.WithExternalLabels(l, ext)
			if err := o.add(l, final, &storepb.Series{Labels: storepb.LabelsToProto(final)}); err != nil {
				t.Fatal(err)
			}
		}
		if err := o.flush(); err != nil {
			t.Fatal(err)
		}
		if !slices.IsSortedFunc(got, labels.Compare) || len(got) != len(in) {
			t.Fatalf("iteration %d: not sorted or lost series:\n%v", iter, got)
		}
	}
}

func TestStripExternal(t *testing.T) {
	ext := labels.FromStrings("cluster", "a", "replica", "0")
	for _, tc := range []struct {
		in   []prompb.Label
		want labels.Labels
	}{
		{
			in:   []prompb.Label{{Name: "__name__", Value: "up"}, {Name: "cluster", Value: "a"}, {Name: "replica", Value: "0"}},
			want: labels.FromStrings("__name__", "up"),
		},
		{
			// A series label that only shares the name is kept.
			in:   []prompb.Label{{Name: "__name__", Value: "up"}, {Name: "cluster", Value: "b"}},
			want: labels.FromStrings("__name__", "up", "cluster", "b"),
		},
	} {
		if got := stripExternal(tc.in, ext); !labels.Equal(got, tc.want) {
			t.Errorf("stripExternal(%v) = %v, want %v", tc.in, got, tc.want)
		}
	}
}

func TestChunkEncoding(t *testing.T) {
	for _, tc := range []struct {
		in      prompb.Chunk_Encoding
		want    storepb.Chunk_Encoding
		wantErr bool
	}{
		{prompb.Chunk_XOR, storepb.Chunk_XOR, false},
		{prompb.Chunk_HISTOGRAM, storepb.Chunk_HISTOGRAM, false},
		{prompb.Chunk_FLOAT_HISTOGRAM, storepb.Chunk_FLOAT_HISTOGRAM, false},
		{prompb.Chunk_UNKNOWN, 0, true},
		{prompb.Chunk_XOR2, 0, true},
	} {
		got, err := chunkEncoding(tc.in)
		if (err != nil) != tc.wantErr || got != tc.want {
			t.Errorf("chunkEncoding(%s) = %v, %v; want %v, error %v", tc.in, got, err, tc.want, tc.wantErr)
		}
	}
}

func TestParseTimeOrDuration(t *testing.T) {
	for _, tc := range []struct {
		in      string
		want    int64 // for absolute times
		rel     bool
		wantErr bool
	}{
		{in: "", want: -1 << 63},
		{in: "2024-01-02T03:04:05Z", want: 1704164645000},
		{in: "-2h", rel: true},
		{in: "-1d12h", rel: true},
		{in: "yesterday", wantErr: true},
		{in: "-2x", wantErr: true},
	} {
		got, err := ParseTimeOrDuration(tc.in)
		if (err != nil) != tc.wantErr {
			t.Errorf("ParseTimeOrDuration(%q) error %v, want error %v", tc.in, err, tc.wantErr)
			continue
		}
		if tc.wantErr || tc.rel {
			continue
		}
		if ts := got.PrometheusTimestamp(); ts != tc.want {
			t.Errorf("ParseTimeOrDuration(%q) = %d, want %d", tc.in, ts, tc.want)
		}
	}
}
