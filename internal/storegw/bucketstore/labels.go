package bucketstore

import (
	"context"
	"slices"
	"sort"
	"strings"
	"sync"

	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/model/labels"
	"golang.org/x/sync/errgroup"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/stevedore-dev/stevedore/internal/infopb"
	"github.com/stevedore-dev/stevedore/internal/storepb"
)

// LabelNames implements storepb.StoreServer. Without matchers it reads the
// index-headers only; with matchers it selects series (labels only).
func (s *Store) LabelNames(ctx context.Context, req *storepb.LabelNamesRequest) (*storepb.LabelNamesResponse, error) {
	ms, err := storepb.MatchersFromProto(req.GetMatchers())
	if err != nil {
		return nil, err
	}
	r := s.newRequest(req.GetStart(), req.GetEnd(), true, req.GetWithoutReplicaLabels())
	defer s.metrics.observe(r.stats)
	all, release := s.acquireBlocks()
	defer release()

	var (
		mu   sync.Mutex
		sets [][]string
	)
	g, gctx := errgroup.WithContext(ctx)
	for _, b := range all {
		if !b.overlaps(req.GetStart(), req.GetEnd()) {
			continue
		}
		bms, ok := matchersForBlock(b, ms)
		if !ok {
			continue
		}
		g.Go(func() error {
			var names []string
			if len(bms) == 0 {
				idx, err := b.ih.LabelNames()
				if err != nil {
					return err
				}
				names = slices.Clone(idx)
				b.extLset.Range(func(l labels.Label) {
					if _, drop := r.withoutExt[l.Name]; !drop {
						names = append(names, l.Name)
					}
				})
			} else {
				sel, err := b.selectSeries(gctx, bms, r, false)
				if err != nil {
					return err
				}
				seen := map[string]struct{}{}
				err = sel.forEachLabels(gctx, newSeriesDecoder(b, r), func(lset labels.Labels) {
					lset.Range(func(l labels.Label) { seen[l.Name] = struct{}{} })
				})
				if err != nil {
					return err
				}
				for n := range seen {
					names = append(names, n)
				}
			}
			mu.Lock()
			sets = append(sets, names)
			mu.Unlock()
			return nil
		})
	}
	if err := g.Wait(); err != nil {
		return nil, toStatus(err)
	}
	return &storepb.LabelNamesResponse{Names: mergeStrings(sets, req.GetLimit())}, nil
}

// LabelValues implements storepb.StoreServer.
func (s *Store) LabelValues(ctx context.Context, req *storepb.LabelValuesRequest) (*storepb.LabelValuesResponse, error) {
	if req.GetLabel() == "" {
		return nil, status.Error(codes.InvalidArgument, "label name is required")
	}
	ms, err := storepb.MatchersFromProto(req.GetMatchers())
	if err != nil {
		return nil, err
	}
	if slices.Contains(req.GetWithoutReplicaLabels(), req.GetLabel()) {
		return &storepb.LabelValuesResponse{}, nil
	}
	hasNameEq := false
	for _, m := range ms {
		if m.Name == model.MetricNameLabel && m.Type == labels.MatchEqual {
			hasNameEq = true
		}
	}
	r := s.newRequest(req.GetStart(), req.GetEnd(), true, nil)
	defer s.metrics.observe(r.stats)
	all, release := s.acquireBlocks()
	defer release()

	var (
		mu   sync.Mutex
		sets [][]string
	)
	g, gctx := errgroup.WithContext(ctx)
	for _, b := range all {
		if !b.overlaps(req.GetStart(), req.GetEnd()) {
			continue
		}
		bms, ok := matchersForBlock(b, ms)
		if !ok {
			continue
		}
		// Only series that have the label can contribute a value.
		if !hasNameEq && len(bms) > 0 && !b.extLset.Has(req.GetLabel()) {
			bms = append(bms, labels.MustNewMatcher(labels.MatchNotEqual, req.GetLabel(), ""))
		}
		g.Go(func() error {
			var vals []string
			if len(bms) == 0 {
				idx, err := b.ih.LabelValues(req.GetLabel())
				if err != nil {
					return err
				}
				vals = slices.Clone(idx)
				if v := b.extLset.Get(req.GetLabel()); v != "" {
					vals = append(vals, v)
				}
			} else {
				sel, err := b.selectSeries(gctx, bms, r, false)
				if err != nil {
					return err
				}
				seen := map[string]struct{}{}
				err = sel.forEachLabels(gctx, newSeriesDecoder(b, r), func(lset labels.Labels) {
					if v := lset.Get(req.GetLabel()); v != "" {
						seen[v] = struct{}{}
					}
				})
				if err != nil {
					return err
				}
				for v := range seen {
					vals = append(vals, v)
				}
			}
			mu.Lock()
			sets = append(sets, vals)
			mu.Unlock()
			return nil
		})
	}
	if err := g.Wait(); err != nil {
		return nil, toStatus(err)
	}
	return &storepb.LabelValuesResponse{Values: mergeStrings(sets, req.GetLimit())}, nil
}

// mergeStrings returns the sorted union of sets, cut to limit when positive.
func mergeStrings(sets [][]string, limit int64) []string {
	n := 0
	for _, s := range sets {
		n += len(s)
	}
	out := make([]string, 0, n)
	for _, s := range sets {
		out = append(out, s...)
	}
	sort.Strings(out)
	out = slices.Compact(out)
	if limit > 0 && int64(len(out)) > limit {
		out = out[:limit]
	}
	return out
}

// LabelSets returns the distinct external label sets of the loaded blocks,
// sorted, as the store advertises them.
func (s *Store) LabelSets() []labels.Labels {
	seen := map[uint64]labels.Labels{}
	for _, b := range s.snapshot() {
		seen[b.extLset.Hash()] = b.extLset
	}
	out := make([]labels.Labels, 0, len(seen))
	for _, l := range seen {
		out = append(out, l)
	}
	sort.Slice(out, func(i, j int) bool { return strings.Compare(out[i].String(), out[j].String()) < 0 })
	return out
}

// TSDBInfos returns per label set the time ranges covered, adjacent and
// overlapping blocks joined.
func (s *Store) TSDBInfos() []*infopb.TSDBInfo {
	byLset := map[uint64][]*bucketBlock{}
	for _, b := range s.snapshot() {
		h := b.extLset.Hash()
		byLset[h] = append(byLset[h], b)
	}
	var out []*infopb.TSDBInfo
	for _, bs := range byLset {
		cur := &infopb.TSDBInfo{Labels: &storepb.LabelSet{Labels: storepb.LabelsToProto(bs[0].extLset)}, MinTime: bs[0].meta.MinTime, MaxTime: bs[0].meta.MaxTime}
		for _, b := range bs[1:] {
			if b.meta.MinTime > cur.MaxTime {
				out = append(out, cur)
				cur = &infopb.TSDBInfo{Labels: cur.Labels, MinTime: b.meta.MinTime, MaxTime: b.meta.MaxTime}
				continue
			}
			cur.MaxTime = max(cur.MaxTime, b.meta.MaxTime)
		}
		out = append(out, cur)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].MinTime < out[j].MinTime })
	return out
}

// Info implements the thanos.info.Info service.
func (s *Store) Info(context.Context, *infopb.InfoRequest) (*infopb.InfoResponse, error) {
	mint, maxt := s.TimeRange()
	return &infopb.InfoResponse{
		ComponentType: "store",
		LabelSets:     storepb.LabelSetsToProto(s.LabelSets()),
		Store: &infopb.StoreInfo{
			MinTime:                      mint,
			MaxTime:                      maxt,
			SupportsWithoutReplicaLabels: true,
			TsdbInfos:                    s.TSDBInfos(),
		},
	}, nil
}
