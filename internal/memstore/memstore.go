// Package memstore is a StoreAPI server over an in-memory set of float series.
// It is the smallest complete implementation of the wire protocol: tests use
// it to prove that a real Thanos Querier understands what our protocol code
// sends, independently of the sidecar and store gateway.
package memstore

import (
	"context"
	"math"
	"slices"
	"sort"

	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/tsdb/chunkenc"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/stevedore-dev/stevedore/internal/infopb"
	"github.com/stevedore-dev/stevedore/internal/storepb"
)

// Sample is one float sample.
type Sample struct {
	T int64
	V float64
}

// Series is a labelled list of samples in time order.
type Series struct {
	Labels  labels.Labels
	Samples []Sample
}

// samplesPerChunk matches Prometheus's target chunk size.
const samplesPerChunk = 120

// Store serves series over thanos.Store and thanos.info.Info.
type Store struct {
	storepb.UnimplementedStoreServer
	infopb.UnimplementedInfoServer

	external labels.Labels
	series   []Series
	minT     int64
	maxT     int64
}

// New returns a store of series with the given external labels.
func New(external labels.Labels, series []Series) *Store {
	s := &Store{external: external, minT: math.MaxInt64, maxT: math.MinInt64}
	for _, in := range series {
		lset := storepb.WithExternalLabels(in.Labels, external)
		s.series = append(s.series, Series{Labels: lset, Samples: in.Samples})
		for _, smp := range in.Samples {
			s.minT = min(s.minT, smp.T)
			s.maxT = max(s.maxT, smp.T)
		}
	}
	sort.Slice(s.series, func(i, j int) bool { return labels.Compare(s.series[i].Labels, s.series[j].Labels) < 0 })
	return s
}

// Register adds the Store and Info services to srv.
func (s *Store) Register(srv *grpc.Server) {
	storepb.RegisterStoreServer(srv, s)
	infopb.RegisterInfoServer(srv, s)
}

// Info describes the store to a querier.
func (s *Store) Info(context.Context, *infopb.InfoRequest) (*infopb.InfoResponse, error) {
	return &infopb.InfoResponse{
		ComponentType: "store",
		LabelSets:     storepb.LabelSetsToProto([]labels.Labels{s.external}),
		Store:         &infopb.StoreInfo{MinTime: s.minT, MaxTime: s.maxT, SupportsWithoutReplicaLabels: false},
	}, nil
}

func matches(lset labels.Labels, ms []*labels.Matcher) bool {
	for _, m := range ms {
		if !m.Matches(lset.Get(m.Name)) {
			return false
		}
	}
	return true
}

// Series streams the matching series with their samples in XOR chunks.
func (s *Store) Series(req *storepb.SeriesRequest, srv grpc.ServerStreamingServer[storepb.SeriesResponse]) error {
	ms, err := storepb.MatchersFromProto(req.GetMatchers())
	if err != nil {
		return err
	}
	for _, in := range s.series {
		if !matches(in.Labels, ms) {
			continue
		}
		out := &storepb.Series{Labels: storepb.LabelsToProto(in.Labels)}
		var window []Sample
		for _, smp := range in.Samples {
			if smp.T >= req.GetMinTime() && smp.T <= req.GetMaxTime() {
				window = append(window, smp)
			}
		}
		if len(window) == 0 {
			continue
		}
		if !req.GetSkipChunks() {
			for chunk := range slices.Chunk(window, samplesPerChunk) {
				c, err := encodeXOR(chunk)
				if err != nil {
					return status.Errorf(codes.Internal, "encode chunk: %v", err)
				}
				out.Chunks = append(out.Chunks, c)
			}
		}
		if err := srv.Send(storepb.NewSeriesResponse(out)); err != nil {
			return err
		}
	}
	return nil
}

func encodeXOR(samples []Sample) (*storepb.AggrChunk, error) {
	c := chunkenc.NewXORChunk()
	app, err := c.Appender()
	if err != nil {
		return nil, err
	}
	for _, smp := range samples {
		app.Append(0, smp.T, smp.V)
	}
	return &storepb.AggrChunk{
		MinTime: samples[0].T,
		MaxTime: samples[len(samples)-1].T,
		Raw:     &storepb.Chunk{Type: storepb.Chunk_XOR, Data: c.Bytes()},
	}, nil
}

func (s *Store) selected(ms []*labels.Matcher, mint, maxt int64) []labels.Labels {
	var out []labels.Labels
	for _, in := range s.series {
		if !matches(in.Labels, ms) {
			continue
		}
		for _, smp := range in.Samples {
			if smp.T >= mint && smp.T <= maxt {
				out = append(out, in.Labels)
				break
			}
		}
	}
	return out
}

// LabelNames returns the sorted label names of matching series.
func (s *Store) LabelNames(_ context.Context, req *storepb.LabelNamesRequest) (*storepb.LabelNamesResponse, error) {
	ms, err := storepb.MatchersFromProto(req.GetMatchers())
	if err != nil {
		return nil, err
	}
	set := map[string]struct{}{}
	for _, lset := range s.selected(ms, req.GetStart(), req.GetEnd()) {
		lset.Range(func(l labels.Label) { set[l.Name] = struct{}{} })
	}
	return &storepb.LabelNamesResponse{Names: sortedKeys(set)}, nil
}

// LabelValues returns the sorted values of a label over matching series.
func (s *Store) LabelValues(_ context.Context, req *storepb.LabelValuesRequest) (*storepb.LabelValuesResponse, error) {
	if req.GetLabel() == "" {
		return nil, status.Error(codes.InvalidArgument, "label name is required")
	}
	ms, err := storepb.MatchersFromProto(req.GetMatchers())
	if err != nil {
		return nil, err
	}
	set := map[string]struct{}{}
	for _, lset := range s.selected(ms, req.GetStart(), req.GetEnd()) {
		if v := lset.Get(req.GetLabel()); v != "" {
			set[v] = struct{}{}
		}
	}
	return &storepb.LabelValuesResponse{Values: sortedKeys(set)}, nil
}

func sortedKeys(set map[string]struct{}) []string {
	out := make([]string, 0, len(set))
	for k := range set {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}
