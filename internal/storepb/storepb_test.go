package storepb

import (
	"slices"
	"testing"

	"github.com/prometheus/prometheus/model/labels"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

func TestMatchersRoundTrip(t *testing.T) {
	in := []*LabelMatcher{
		{Type: LabelMatcher_EQ, Name: "a", Value: "1"},
		{Type: LabelMatcher_NEQ, Name: "b", Value: "2"},
		{Type: LabelMatcher_RE, Name: "c", Value: "x|y"},
		{Type: LabelMatcher_NRE, Name: "d", Value: "z.*"},
	}
	pms, err := MatchersFromProto(in)
	if err != nil {
		t.Fatal(err)
	}
	wantTypes := []labels.MatchType{labels.MatchEqual, labels.MatchNotEqual, labels.MatchRegexp, labels.MatchNotRegexp}
	for i, m := range pms {
		if m.Type != wantTypes[i] || m.Name != in[i].Name || m.Value != in[i].Value {
			t.Errorf("matcher %d: got %s", i, m)
		}
	}
	back := MatchersToProto(pms)
	for i := range in {
		if back[i].Type != in[i].Type || back[i].Name != in[i].Name || back[i].Value != in[i].Value {
			t.Errorf("round trip %d: got %v, want %v", i, back[i], in[i])
		}
	}
}

func TestMatchersFromProtoErrors(t *testing.T) {
	for _, tc := range []struct {
		name string
		m    *LabelMatcher
	}{
		{"bad regexp", &LabelMatcher{Type: LabelMatcher_RE, Name: "a", Value: "("}},
		{"unknown type", &LabelMatcher{Type: 7, Name: "a", Value: "b"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := MatchersFromProto([]*LabelMatcher{tc.m})
			if status.Code(err) != codes.InvalidArgument {
				t.Fatalf("got %v, want an InvalidArgument error", err)
			}
		})
	}
}

func TestMatchExternalLabels(t *testing.T) {
	ext := labels.FromStrings("cluster", "eu1", "replica", "0")
	for _, tc := range []struct {
		name     string
		matchers []*labels.Matcher
		match    bool
		rest     []string
	}{
		{"no matchers", nil, true, nil},
		{"only series labels", []*labels.Matcher{labels.MustNewMatcher(labels.MatchEqual, "job", "x")}, true, []string{"job"}},
		{"external equal", []*labels.Matcher{labels.MustNewMatcher(labels.MatchEqual, "cluster", "eu1"), labels.MustNewMatcher(labels.MatchEqual, "job", "x")}, true, []string{"job"}},
		{"external contradicted", []*labels.Matcher{labels.MustNewMatcher(labels.MatchEqual, "cluster", "us1")}, false, nil},
		{"external regexp", []*labels.Matcher{labels.MustNewMatcher(labels.MatchRegexp, "cluster", "eu.*")}, true, nil},
		{"external not-regexp contradicted", []*labels.Matcher{labels.MustNewMatcher(labels.MatchNotRegexp, "replica", "0|1")}, false, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ok, rest := MatchExternalLabels(tc.matchers, ext)
			if ok != tc.match {
				t.Fatalf("match = %v, want %v", ok, tc.match)
			}
			var names []string
			for _, m := range rest {
				names = append(names, m.Name)
			}
			if !slices.Equal(names, tc.rest) {
				t.Errorf("rest = %v, want %v", names, tc.rest)
			}
		})
	}
}

func TestWithExternalLabels(t *testing.T) {
	got := WithExternalLabels(labels.FromStrings("__name__", "up", "cluster", "inner", "job", "a"), labels.FromStrings("cluster", "eu1", "zone", "z"))
	want := labels.FromStrings("__name__", "up", "cluster", "eu1", "job", "a", "zone", "z")
	if !labels.Equal(got, want) {
		t.Errorf("got %s, want %s", got, want)
	}
}

func TestCompareLabels(t *testing.T) {
	for _, tc := range []struct {
		a, b labels.Labels
	}{
		{labels.FromStrings("a", "1"), labels.FromStrings("a", "2")},
		{labels.FromStrings("a", "1"), labels.FromStrings("a", "1", "b", "1")},
		{labels.FromStrings("a", "1", "c", "1"), labels.FromStrings("b", "1")},
	} {
		if got, want := sign(CompareLabels(LabelsToProto(tc.a), LabelsToProto(tc.b))), sign(labels.Compare(tc.a, tc.b)); got != want {
			t.Errorf("CompareLabels(%s, %s) = %d, labels.Compare = %d", tc.a, tc.b, got, want)
		}
	}
}

func sign(i int) int {
	switch {
	case i < 0:
		return -1
	case i > 0:
		return 1
	}
	return 0
}
