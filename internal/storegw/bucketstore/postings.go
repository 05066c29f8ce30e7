package bucketstore

import (
	"context"
	"fmt"
	"slices"
	"sort"

	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/storage"
	"github.com/prometheus/prometheus/tsdb/index"
)

// postingGroup is one matcher turned into postings keys: series are selected
// by the union of addKeys, or by all series minus the union of removeKeys
// when addAll is set (matchers that also match series without the label).
type postingGroup struct {
	addAll     bool
	addKeys    []labels.Label
	removeKeys []labels.Label
}

func keysOf(name string, values []string) []labels.Label {
	out := make([]labels.Label, len(values))
	for i, v := range values {
		out[i] = labels.Label{Name: name, Value: v}
	}
	return out
}

// valuesFunc returns the sorted values of a label that start with prefix and
// are kept by keep (see indexheader.Reader.MatchingLabelValues).
type valuesFunc func(name, prefix string, keep func(string) bool) ([]string, error)

// toPostingGroup follows the semantics of Prometheus's PostingsForMatchers:
// a matcher that matches the empty string also selects series without the
// label, so it becomes "everything except the non-matching values". ok is
// false when the matcher can select nothing.
func toPostingGroup(m *labels.Matcher, values valuesFunc) (pg postingGroup, ok bool, err error) {
	switch {
	case m.Type == labels.MatchRegexp && m.Value == ".*":
		return postingGroup{addAll: true}, true, nil
	case m.Type == labels.MatchNotRegexp && m.Value == ".*":
		return postingGroup{}, false, nil
	}
	if m.Matches("") {
		if m.Type == labels.MatchNotEqual {
			return postingGroup{addAll: true, removeKeys: keysOf(m.Name, []string{m.Value})}, true, nil
		}
		if m.Type == labels.MatchNotRegexp {
			if set := m.SetMatches(); len(set) > 0 {
				slices.Sort(set)
				return postingGroup{addAll: true, removeKeys: keysOf(m.Name, set)}, true, nil
			}
		}
		remove, err := values(m.Name, "", func(v string) bool { return !m.Matches(v) })
		if err != nil {
			return pg, false, err
		}
		return postingGroup{addAll: true, removeKeys: keysOf(m.Name, remove)}, true, nil
	}
	var add []string
	switch {
	case m.Type == labels.MatchEqual:
		add = []string{m.Value}
	case m.Type == labels.MatchRegexp && len(m.SetMatches()) > 0:
		add = m.SetMatches()
		slices.Sort(add)
	default:
		// Only values with the regex's literal prefix can match: the
		// index-header scans just those.
		prefix := ""
		if m.Type == labels.MatchRegexp {
			prefix = m.Prefix()
		}
		if add, err = values(m.Name, prefix, m.Matches); err != nil {
			return pg, false, err
		}
	}
	if len(add) == 0 {
		return postingGroup{}, false, nil
	}
	return postingGroup{addKeys: keysOf(m.Name, add)}, true, nil
}

// expandPostings returns the sorted series IDs of the block matching all
// matchers. No matchers select nothing, as in Thanos (a request whose
// matchers were all satisfied by external labels still carries __name__ or
// similar in practice).
func (b *bucketBlock) expandPostings(ctx context.Context, ms []*labels.Matcher, st *queryStats) ([]storage.SeriesRef, error) {
	if len(ms) == 0 {
		return nil, nil
	}
	values := func(name, prefix string, keep func(string) bool) ([]string, error) {
		v, err := b.ih.MatchingLabelValues(name, prefix, keep)
		if err != nil {
			return nil, fmt.Errorf("label values of %s: %w", name, err)
		}
		return v, nil
	}
	var (
		groups []postingGroup
		keys   []labels.Label
		hasAdd bool
	)
	for _, m := range ms {
		pg, ok, err := toPostingGroup(m, values)
		if err != nil {
			return nil, err
		}
		if !ok {
			return nil, nil
		}
		if len(pg.addKeys) == 0 && len(pg.removeKeys) == 0 {
			continue // =~".*" restricts nothing.
		}
		hasAdd = hasAdd || len(pg.addKeys) > 0
		groups = append(groups, pg)
		keys = append(keys, pg.addKeys...)
		keys = append(keys, pg.removeKeys...)
	}
	allName, allValue := index.AllPostingsKey()
	allKey := labels.Label{Name: allName, Value: allValue}
	if !hasAdd {
		keys = append(keys, allKey)
	}
	fetched, err := b.fetchPostings(ctx, keys, st)
	if err != nil {
		return nil, err
	}
	get := func(k labels.Label) []storage.SeriesRef { return fetched[k] }

	var result []storage.SeriesRef
	first := true
	for _, g := range groups {
		if len(g.addKeys) == 0 {
			continue
		}
		lists := make([][]storage.SeriesRef, 0, len(g.addKeys))
		for _, k := range g.addKeys {
			lists = append(lists, get(k))
		}
		u := union(lists)
		if first {
			result, first = u, false
		} else {
			result = intersect(result, u)
		}
		if len(result) == 0 {
			return nil, nil
		}
	}
	if first {
		result = get(allKey)
	}
	for _, g := range groups {
		if len(g.removeKeys) == 0 {
			continue
		}
		lists := make([][]storage.SeriesRef, 0, len(g.removeKeys))
		for _, k := range g.removeKeys {
			lists = append(lists, get(k))
		}
		result = subtract(result, union(lists))
		if len(result) == 0 {
			return nil, nil
		}
	}
	return result, nil
}

// union merges sorted lists pairwise, O(n log k) for k lists of n IDs in
// all: cheaper than sorting their concatenation for the many small lists of
// a regex over many values.
func union(lists [][]storage.SeriesRef) []storage.SeriesRef {
	switch len(lists) {
	case 0:
		return nil
	case 1:
		return lists[0]
	}
	for len(lists) > 1 {
		next := lists[:0]
		for i := 0; i < len(lists); i += 2 {
			if i+1 == len(lists) {
				next = append(next, lists[i])
				break
			}
			next = append(next, merge(lists[i], lists[i+1]))
		}
		lists = next
	}
	return lists[0]
}

// merge returns the sorted union of sorted lists a and b.
func merge(a, b []storage.SeriesRef) []storage.SeriesRef {
	out := make([]storage.SeriesRef, 0, len(a)+len(b))
	i, j := 0, 0
	for i < len(a) && j < len(b) {
		switch {
		case a[i] < b[j]:
			out = append(out, a[i])
			i++
		case a[i] > b[j]:
			out = append(out, b[j])
			j++
		default:
			out = append(out, a[i])
			i++
			j++
		}
	}
	out = append(out, a[i:]...)
	return append(out, b[j:]...)
}

func intersect(a, b []storage.SeriesRef) []storage.SeriesRef {
	out := make([]storage.SeriesRef, 0, min(len(a), len(b)))
	for i, j := 0, 0; i < len(a) && j < len(b); {
		switch {
		case a[i] < b[j]:
			i++
		case a[i] > b[j]:
			j++
		default:
			out = append(out, a[i])
			i++
			j++
		}
	}
	return out
}

func subtract(a, b []storage.SeriesRef) []storage.SeriesRef {
	out := make([]storage.SeriesRef, 0, len(a))
	j := 0
	for _, x := range a {
		for j < len(b) && b[j] < x {
			j++
		}
		if j < len(b) && b[j] == x {
			continue
		}
		out = append(out, x)
	}
	return out
}

// sortLabelKeys sorts keys by name then value, as PostingsOffsets wants them.
func sortLabelKeys(ks []labels.Label) {
	sort.Slice(ks, func(i, j int) bool {
		if ks[i].Name != ks[j].Name {
			return ks[i].Name < ks[j].Name
		}
		return ks[i].Value < ks[j].Value
	})
}
