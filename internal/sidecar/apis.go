package sidecar

import (
	"context"
	"sort"
	"strings"
	"time"

	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/promql/parser"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/stevedore-dev/stevedore/internal/exemplarspb"
	"github.com/stevedore-dev/stevedore/internal/infopb"
	"github.com/stevedore-dev/stevedore/internal/metadatapb"
	"github.com/stevedore-dev/stevedore/internal/promclient"
	"github.com/stevedore-dev/stevedore/internal/rulespb"
	"github.com/stevedore-dev/stevedore/internal/storepb"
	"github.com/stevedore-dev/stevedore/internal/targetspb"
)

// infoServer answers thanos.info.Info: since Thanos v0.37 it is how a querier
// learns which APIs the sidecar offers, its external labels and time range.
type infoServer struct {
	infopb.UnimplementedInfoServer
	labels     func() labels.Labels
	timestamps func() (int64, int64)
}

func (i *infoServer) Info(context.Context, *infopb.InfoRequest) (*infopb.InfoResponse, error) {
	ext := i.labels()
	mint, maxt := i.timestamps()
	set := &storepb.LabelSet{Labels: storepb.LabelsToProto(ext)}
	return &infopb.InfoResponse{
		ComponentType: "sidecar",
		LabelSets:     []*storepb.LabelSet{set},
		Store: &infopb.StoreInfo{
			MinTime:                      mint,
			MaxTime:                      maxt,
			SupportsWithoutReplicaLabels: true,
			TsdbInfos:                    []*infopb.TSDBInfo{{Labels: set, MinTime: mint, MaxTime: maxt}},
		},
		Rules:          &infopb.RulesInfo{},
		Targets:        &infopb.TargetsInfo{},
		MetricMetadata: &infopb.MetricMetadataInfo{},
		Exemplars:      &infopb.ExemplarsInfo{MinTime: mint, MaxTime: maxt},
	}, nil
}

func labelSet(m map[string]string) *storepb.LabelSet {
	return &storepb.LabelSet{Labels: storepb.LabelsToProto(labels.FromMap(m))}
}

// withExt returns m as a label set with the external labels added; Prometheus
// does not add them to rules, targets or exemplars, and without them a
// querier could not tell two Prometheus servers' answers apart.
func withExt(m map[string]string, ext labels.Labels) *storepb.LabelSet {
	return &storepb.LabelSet{Labels: storepb.LabelsToProto(storepb.WithExternalLabels(labels.FromMap(m), ext))}
}

func ts(t time.Time) *timestamppb.Timestamp { return timestamppb.New(t) }

// rulesServer forwards /api/v1/rules as thanos.Rules.
type rulesServer struct {
	rulespb.UnimplementedRulesServer
	client *promclient.Client
	labels func() labels.Labels
}

func (s *rulesServer) Rules(r *rulespb.RulesRequest, srv grpc.ServerStreamingServer[rulespb.RulesResponse]) error {
	typ := ""
	if r.GetType() != rulespb.RulesRequest_ALL {
		typ = strings.ToLower(r.GetType().String())
	}
	rd, err := s.client.Rules(srv.Context(), typ)
	if err != nil {
		return err
	}
	ext := s.labels()
	filter, err := newRuleFilter(r)
	if err != nil {
		return err
	}
	for _, g := range rd.Groups {
		if !filter.group(g) {
			continue
		}
		pg := &rulespb.RuleGroup{
			Name:                      g.Name,
			File:                      g.File,
			Interval:                  g.Interval,
			Limit:                     g.Limit,
			EvaluationDurationSeconds: g.EvaluationTime,
			LastEvaluation:            ts(g.LastEvaluation),
			PartialResponseStrategy:   r.GetPartialResponseStrategy(),
		}
		for _, rule := range g.Rules {
			if !filter.rule(rule) {
				continue
			}
			switch rule.Type {
			case "alerting":
				a := &rulespb.Alert{
					State:                     alertState(rule.State),
					Name:                      rule.Name,
					Query:                     rule.Query,
					DurationSeconds:           rule.Duration,
					KeepFiringForSeconds:      rule.KeepFiringFor,
					Labels:                    withExt(rule.Labels, ext),
					Annotations:               labelSet(rule.Annotations),
					Health:                    rule.Health,
					LastError:                 rule.LastError,
					EvaluationDurationSeconds: rule.EvaluationTime,
					LastEvaluation:            ts(rule.LastEvaluation),
				}
				for _, in := range rule.Alerts {
					ai := &rulespb.AlertInstance{
						Labels:                  withExt(in.Labels, ext),
						Annotations:             labelSet(in.Annotations),
						State:                   alertState(in.State),
						Value:                   in.Value,
						PartialResponseStrategy: r.GetPartialResponseStrategy(),
					}
					if in.ActiveAt != nil {
						ai.ActiveAt = ts(*in.ActiveAt)
					}
					a.Alerts = append(a.Alerts, ai)
				}
				pg.Rules = append(pg.Rules, &rulespb.Rule{Result: &rulespb.Rule_Alert{Alert: a}})
			case "recording":
				pg.Rules = append(pg.Rules, &rulespb.Rule{Result: &rulespb.Rule_Recording{Recording: &rulespb.RecordingRule{
					Name:                      rule.Name,
					Query:                     rule.Query,
					Labels:                    withExt(rule.Labels, ext),
					Health:                    rule.Health,
					LastError:                 rule.LastError,
					EvaluationDurationSeconds: rule.EvaluationTime,
					LastEvaluation:            ts(rule.LastEvaluation),
				}}})
			}
		}
		// Groups are sent even when empty: the Thanos API contract says
		// empty rule groups are part of the answer.
		if err := srv.Send(&rulespb.RulesResponse{Result: &rulespb.RulesResponse_Group{Group: pg}}); err != nil {
			return err
		}
	}
	return nil
}

func alertState(s string) rulespb.AlertState {
	switch s {
	case "inactive":
		return rulespb.AlertState_INACTIVE
	case "pending":
		return rulespb.AlertState_PENDING
	case "firing":
		return rulespb.AlertState_FIRING
	}
	return rulespb.AlertState_UNKNOWN
}

// ruleFilter applies the request's filters, which Prometheus 2.42 does not
// know (rule_name[], rule_group[], file[] came later; match[] later still).
type ruleFilter struct {
	names, groups, files map[string]bool
	matchers             [][]*labels.Matcher
}

func newRuleFilter(r *rulespb.RulesRequest) (*ruleFilter, error) {
	set := func(xs []string) map[string]bool {
		if len(xs) == 0 {
			return nil
		}
		m := make(map[string]bool, len(xs))
		for _, x := range xs {
			m[x] = true
		}
		return m
	}
	f := &ruleFilter{names: set(r.GetRuleName()), groups: set(r.GetRuleGroup()), files: set(r.GetFile())}
	for _, s := range r.GetMatcherString() {
		ms, err := parser.NewParser(parser.Options{}).ParseMetricSelector(s)
		if err != nil {
			return nil, status.Errorf(codes.InvalidArgument, "rule matcher %q: %v", s, err)
		}
		f.matchers = append(f.matchers, ms)
	}
	return f, nil
}

func (f *ruleFilter) group(g promclient.RuleGroup) bool {
	return (f.groups == nil || f.groups[g.Name]) && (f.files == nil || f.files[g.File])
}

func (f *ruleFilter) rule(r promclient.Rule) bool {
	if f.names != nil && !f.names[r.Name] {
		return false
	}
	if len(f.matchers) == 0 {
		return true
	}
	lset := labels.FromMap(r.Labels)
	for _, ms := range f.matchers {
		ok := true
		for _, m := range ms {
			if !m.Matches(lset.Get(m.Name)) {
				ok = false
				break
			}
		}
		if ok {
			return true
		}
	}
	return false
}

// targetsServer forwards /api/v1/targets as thanos.Targets.
type targetsServer struct {
	targetspb.UnimplementedTargetsServer
	client *promclient.Client
	labels func() labels.Labels
}

func (s *targetsServer) Targets(r *targetspb.TargetsRequest, srv grpc.ServerStreamingServer[targetspb.TargetsResponse]) error {
	state := ""
	if r.GetState() != targetspb.TargetsRequest_ANY {
		state = strings.ToLower(r.GetState().String())
	}
	td, err := s.client.Targets(srv.Context(), state)
	if err != nil {
		return err
	}
	ext := s.labels()
	out := &targetspb.TargetDiscovery{}
	for _, t := range td.ActiveTargets {
		out.ActiveTargets = append(out.ActiveTargets, &targetspb.ActiveTarget{
			DiscoveredLabels:   withExt(t.DiscoveredLabels, ext),
			Labels:             withExt(t.Labels, ext),
			ScrapePool:         t.ScrapePool,
			ScrapeUrl:          t.ScrapeURL,
			GlobalUrl:          t.GlobalURL,
			LastError:          t.LastError,
			LastScrape:         ts(t.LastScrape),
			LastScrapeDuration: t.LastScrapeDuration,
			Health:             targetHealth(t.Health),
		})
	}
	for _, t := range td.DroppedTargets {
		out.DroppedTargets = append(out.DroppedTargets, &targetspb.DroppedTarget{DiscoveredLabels: withExt(t.DiscoveredLabels, ext)})
	}
	return srv.Send(&targetspb.TargetsResponse{Result: &targetspb.TargetsResponse_Targets{Targets: out}})
}

func targetHealth(h string) targetspb.ActiveTarget_Health {
	switch h {
	case "up":
		return targetspb.ActiveTarget_UP
	case "down":
		return targetspb.ActiveTarget_DOWN
	}
	return targetspb.ActiveTarget_UNKNOWN
}

// metadataServer forwards /api/v1/metadata as thanos.Metadata.
type metadataServer struct {
	metadatapb.UnimplementedMetadataServer
	client *promclient.Client
}

func (s *metadataServer) MetricMetadata(r *metadatapb.MetricMetadataRequest, srv grpc.ServerStreamingServer[metadatapb.MetricMetadataResponse]) error {
	// Thanos sends limit 0 for "no limit" (its API maps absent to -1 before
	// that, but older queriers send 0).
	limit := int(r.GetLimit())
	if limit <= 0 {
		limit = -1
	}
	md, err := s.client.Metadata(srv.Context(), r.GetMetric(), limit)
	if err != nil {
		return err
	}
	out := &metadatapb.MetricMetadata{Metadata: make(map[string]*metadatapb.MetricMetadataEntry, len(md))}
	for name, metas := range md {
		e := &metadatapb.MetricMetadataEntry{}
		for _, m := range metas {
			e.Metas = append(e.Metas, &metadatapb.Meta{Type: m.Type, Help: m.Help, Unit: m.Unit})
		}
		out.Metadata[name] = e
	}
	return srv.Send(&metadatapb.MetricMetadataResponse{Result: &metadatapb.MetricMetadataResponse_Metadata{Metadata: out}})
}

// exemplarsServer forwards /api/v1/query_exemplars as thanos.Exemplars.
type exemplarsServer struct {
	exemplarspb.UnimplementedExemplarsServer
	client *promclient.Client
	labels func() labels.Labels
}

func (s *exemplarsServer) Exemplars(r *exemplarspb.ExemplarsRequest, srv grpc.ServerStreamingServer[exemplarspb.ExemplarsResponse]) error {
	data, err := s.client.Exemplars(srv.Context(), r.GetQuery(), r.GetStart(), r.GetEnd())
	if err != nil {
		return err
	}
	ext := s.labels()
	sort.SliceStable(data, func(i, j int) bool {
		return labels.Compare(labels.FromMap(data[i].SeriesLabels), labels.FromMap(data[j].SeriesLabels)) < 0
	})
	for _, d := range data {
		out := &exemplarspb.ExemplarData{SeriesLabels: withExt(d.SeriesLabels, ext)}
		for _, e := range d.Exemplars {
			out.Exemplars = append(out.Exemplars, &exemplarspb.Exemplar{Labels: labelSet(e.Labels), Value: e.Value, Ts: e.Timestamp})
		}
		if err := srv.Send(&exemplarspb.ExemplarsResponse{Result: &exemplarspb.ExemplarsResponse_Data{Data: out}}); err != nil {
			return err
		}
	}
	return nil
}
