package storepb

import (
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/prometheus/prometheus/model/labels"
)

// MatchersFromProto converts wire matchers to Prometheus matchers. A bad
// regular expression or an unknown type is a gRPC InvalidArgument error
// naming the matcher, ready to return from a StoreAPI method.
func MatchersFromProto(ms []*LabelMatcher) ([]*labels.Matcher, error) {
	out := make([]*labels.Matcher, 0, len(ms))
	for _, m := range ms {
		var t labels.MatchType
		switch m.GetType() {
		case LabelMatcher_EQ:
			t = labels.MatchEqual
		case LabelMatcher_NEQ:
			t = labels.MatchNotEqual
		case LabelMatcher_RE:
			t = labels.MatchRegexp
		case LabelMatcher_NRE:
			t = labels.MatchNotRegexp
		default:
			return nil, status.Errorf(codes.InvalidArgument, "matcher %s: unknown type %d", m.GetName(), m.GetType())
		}
		pm, err := labels.NewMatcher(t, m.GetName(), m.GetValue())
		if err != nil {
			return nil, status.Errorf(codes.InvalidArgument, "matcher %s%s%q: %v", m.GetName(), t, m.GetValue(), err)
		}
		out = append(out, pm)
	}
	return out, nil
}

// MatchersToProto converts Prometheus matchers to wire matchers.
func MatchersToProto(ms []*labels.Matcher) []*LabelMatcher {
	out := make([]*LabelMatcher, 0, len(ms))
	for _, m := range ms {
		var t LabelMatcher_Type
		switch m.Type {
		case labels.MatchEqual:
			t = LabelMatcher_EQ
		case labels.MatchNotEqual:
			t = LabelMatcher_NEQ
		case labels.MatchRegexp:
			t = LabelMatcher_RE
		case labels.MatchNotRegexp:
			t = LabelMatcher_NRE
		}
		out = append(out, &LabelMatcher{Type: t, Name: m.Name, Value: m.Value})
	}
	return out
}

// MatchExternalLabels checks matchers against a store's external labels.
// It reports false when a matcher on an external label name rejects that
// label's value: nothing the store holds can match, so it may answer empty
// without looking. Otherwise it returns the matchers that still have to be
// applied to the series themselves (those not about external labels).
func MatchExternalLabels(ms []*labels.Matcher, external labels.Labels) (bool, []*labels.Matcher) {
	if external.IsEmpty() {
		return true, ms
	}
	rest := make([]*labels.Matcher, 0, len(ms))
	for _, m := range ms {
		v := external.Get(m.Name)
		if v == "" && !external.Has(m.Name) {
			rest = append(rest, m)
			continue
		}
		if !m.Matches(v) {
			return false, nil
		}
	}
	return true, rest
}
