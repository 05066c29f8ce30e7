package storepb

import (
	"strings"

	"github.com/prometheus/prometheus/model/labels"
)

// LabelsFromProto converts wire labels to Prometheus labels (sorted).
func LabelsFromProto(ls []*Label) labels.Labels {
	b := labels.NewScratchBuilder(len(ls))
	for _, l := range ls {
		b.Add(l.GetName(), l.GetValue())
	}
	b.Sort()
	return b.Labels()
}

// LabelsToProto converts Prometheus labels to wire labels, keeping their order.
func LabelsToProto(ls labels.Labels) []*Label {
	out := make([]*Label, 0, ls.Len())
	ls.Range(func(l labels.Label) {
		out = append(out, &Label{Name: l.Name, Value: l.Value})
	})
	return out
}

// CompareLabels orders wire label sets the way Prometheus orders labels.Labels;
// both must be sorted by name.
func CompareLabels(a, b []*Label) int {
	n := min(len(a), len(b))
	for i := 0; i < n; i++ {
		if c := strings.Compare(a[i].GetName(), b[i].GetName()); c != 0 {
			return c
		}
		if c := strings.Compare(a[i].GetValue(), b[i].GetValue()); c != 0 {
			return c
		}
	}
	return len(a) - len(b)
}

// WithExternalLabels returns lset with the external labels added; an external
// label replaces a series label of the same name, as in Thanos.
func WithExternalLabels(lset, external labels.Labels) labels.Labels {
	if external.IsEmpty() {
		return lset
	}
	b := labels.NewBuilder(lset)
	external.Range(func(l labels.Label) { b.Set(l.Name, l.Value) })
	return b.Labels()
}

// LabelSetsToProto converts label sets for the Info API.
func LabelSetsToProto(sets []labels.Labels) []*LabelSet {
	out := make([]*LabelSet, 0, len(sets))
	for _, s := range sets {
		out = append(out, &LabelSet{Labels: LabelsToProto(s)})
	}
	return out
}
