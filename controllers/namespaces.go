package controllers

import (
	"fmt"
	"strings"

	"k8s.io/apimachinery/pkg/util/validation"
)

// ParseWatchNamespaces parses the manager's --watch-namespaces flag: a
// comma-separated list of namespace names. The empty string means every
// namespace (nil). Empty items, invalid names and duplicates are errors, so a
// typo stops the manager at start instead of silently watching nothing.
func ParseWatchNamespaces(s string) ([]string, error) {
	if strings.TrimSpace(s) == "" {
		return nil, nil
	}
	var out []string
	seen := map[string]bool{}
	for i, item := range strings.Split(s, ",") {
		ns := strings.TrimSpace(item)
		if ns == "" {
			return nil, fmt.Errorf("namespace list %q: item %d is empty", s, i+1)
		}
		if errs := validation.IsDNS1123Label(ns); len(errs) > 0 {
			return nil, fmt.Errorf("namespace list %q: %q is not a valid namespace name: %s", s, ns, strings.Join(errs, "; "))
		}
		if seen[ns] {
			return nil, fmt.Errorf("namespace list %q: %q is listed twice", s, ns)
		}
		seen[ns] = true
		out = append(out, ns)
	}
	return out, nil
}
