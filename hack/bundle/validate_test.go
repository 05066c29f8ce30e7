package main

import (
	"bytes"
	"encoding/base64"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"testing"

	"github.com/operator-framework/api/pkg/manifests"
	"github.com/operator-framework/api/pkg/validation"
	apierrors "github.com/operator-framework/api/pkg/validation/errors"
	interfaces "github.com/operator-framework/api/pkg/validation/interfaces"
	"k8s.io/apimachinery/pkg/api/validation/path"
	"sigs.k8s.io/yaml"
)

// repoRoot is the repository root seen from this package's directory.
const repoRoot = "../.."

// toleratedWarnings are validator warnings the committed bundle may carry,
// each with the reason it is accepted. A tolerated warning that is no longer
// reported fails the test too, so the list stays true.
var toleratedWarnings = []struct{ contains, reason string }{
	{
		contains: `channel(s) ["alpha"] are not following the recommended naming convention`,
		reason: "the good-practices validator recommends candidate/fast/stable channels; the API is v1alpha1 " +
			"and the package ships on one channel named alpha on purpose, until a v1 API has a stable channel",
	},
	{
		contains: "removed in v1.25. More info: https://kubernetes.io/docs/reference/using-api/deprecation-guide/#v1-25. " +
			"Migrate the API(s) for events: ",
		reason: "RBAC rules name a group, not a version: the deprecated-APIs check (run by operatorhubv2 and " +
			"alpha-deprecated-apis) flags every events.k8s.io rule because events.k8s.io/v1beta1 went away in 1.25; " +
			"the manager records events.k8s.io/v1 Events, GA since 1.19",
	},
}

// The optional validators of `operator-sdk bundle validate
// --select-optional suite=operatorframework` (operator-sdk's
// internal/cmd/operator-sdk/bundle/validate/optional.go, suite label
// "operatorframework").
var operatorFrameworkSuite = []struct {
	name string
	v    interfaces.Validator
}{
	{"operatorhubv2", validation.OperatorHubV2Validator},
	{"capabilities", validation.StandardCapabilitiesValidator},
	{"categories", validation.StandardCategoriesValidator},
	{"alpha-deprecated-apis", validation.AlphaDeprecatedAPIsValidator},
	{"good-practices", validation.GoodPracticesValidator},
}

// supportedKinds are the object kinds a registry+v1 bundle may hold
// (operator-registry's pkg/lib/bundle supportedResources).
var supportedKinds = map[string]bool{
	"ClusterServiceVersion": true, "CustomResourceDefinition": true, "Secret": true, "ClusterRole": true,
	"ClusterRoleBinding": true, "ConfigMap": true, "ServiceAccount": true, "Service": true, "Role": true,
	"RoleBinding": true, "PrometheusRule": true, "ServiceMonitor": true, "PodDisruptionBudget": true,
	"PriorityClass": true, "VerticalPodAutoscaler": true, "ConsoleYAMLSample": true, "ConsoleQuickStart": true,
	"ConsoleCLIDownload": true, "ConsoleLink": true, "NetworkPolicy": true,
}

// validateBundle runs what `operator-sdk bundle validate <dir>
// --select-optional suite=operatorframework` runs on a bundle directory and
// returns the errors and warnings.
func validateBundle(t *testing.T, dir string) (errs, warns []string) {
	t.Helper()
	// The whole bundle directory, so the channels of metadata/annotations.yaml
	// reach the good-practices validator (operator-sdk loads only manifests/
	// and so never checks them).
	b, err := manifests.GetBundleFromDir(dir)
	if err != nil {
		t.Fatalf("load bundle %s: %v", dir, err)
	}
	if b.CSV == nil {
		t.Fatalf("bundle %s has no ClusterServiceVersion", dir)
	}
	var results []apierrors.ManifestResult
	// Bundle content, as operator-sdk's internal/registry.ValidateBundleContent.
	bundleErrs := apierrors.ManifestResult{Name: b.Name}
	for _, u := range b.Objects {
		gvk := u.GetObjectKind().GroupVersionKind()
		if !supportedKinds[gvk.Kind] {
			bundleErrs.Add(apierrors.ErrInvalidBundle("unsupported kind for a registry+v1 bundle object", gvk))
			continue
		}
		if msgs := path.IsValidPathSegmentName(u.GetName()); u.GetName() == "" || len(msgs) > 0 {
			bundleErrs.Add(apierrors.ErrFailedValidation("invalid object name "+strings.Join(msgs, "; "), u.GetName()))
		}
		if u.GetNamespace() != "" {
			bundleErrs.Add(apierrors.ErrFailedValidation("bundle objects must not set a namespace", u.GetName()))
		}
	}
	results = append(results, bundleErrs)
	results = append(results, validation.BundleValidator.Validate(b)...)
	results = append(results, validation.ClusterServiceVersionValidator.Validate(b.CSV)...)
	var crds []any
	for _, crd := range b.V1CRDs {
		crds = append(crds, crd)
	}
	for _, crd := range b.V1beta1CRDs {
		crds = append(crds, crd)
	}
	results = append(results, validation.CustomResourceDefinitionValidator.Validate(crds...)...)
	results = append(results, validation.ObjectValidator.Validate(objectsOf(b)...)...)

	// The optional suite, given the objects operator-sdk passes (and no
	// --optional-values: the deprecated-APIs check uses minKubeVersion).
	objs := objectsOf(b)
	objs = append(objs, map[string]string{})
	for _, s := range operatorFrameworkSuite {
		for _, r := range s.v.Validate(objs...) {
			r.Name = s.name + ": " + r.Name
			results = append(results, r)
		}
	}
	for _, r := range results {
		for _, e := range r.Errors {
			errs = append(errs, r.Name+": "+e.Error())
		}
		for _, w := range r.Warnings {
			warns = append(warns, r.Name+": "+w.Error())
		}
	}
	return errs, warns
}

func objectsOf(b *manifests.Bundle) []any {
	objs := b.ObjectsToValidate()
	for _, o := range b.Objects {
		objs = append(objs, o)
	}
	return objs
}

func TestCommittedBundleValidates(t *testing.T) {
	errs, warns := validateBundle(t, filepath.Join(repoRoot, "bundle"))
	for _, e := range errs {
		t.Errorf("validation error: %s", e)
	}
	used := make([]bool, len(toleratedWarnings))
	for _, w := range warns {
		ok := false
		for i, tw := range toleratedWarnings {
			if strings.Contains(w, tw.contains) {
				used[i], ok = true, true
			}
		}
		if !ok {
			t.Errorf("validation warning (fix it, or tolerate it with a reason in toleratedWarnings): %s", w)
		}
	}
	for i, tw := range toleratedWarnings {
		if !used[i] {
			t.Errorf("tolerated warning %q is no longer reported: remove it from toleratedWarnings", tw.contains)
		}
	}
}

// TestValidatorsCatchBrokenBundles proves the validation above can fail:
// each case breaks a copy of the committed bundle.
func TestValidatorsCatchBrokenBundles(t *testing.T) {
	cases := []struct {
		name  string
		edit  func(csv map[string]any)
		error string
	}{
		{
			name:  "no provider",
			edit:  func(csv map[string]any) { delete(spec(csv), "provider") },
			error: "csv.Spec.Provider.Name not specified",
		},
		{
			name:  "unknown capability",
			edit:  func(csv map[string]any) { annotations(csv)["capabilities"] = "Fully Magic" },
			error: `"Fully Magic" is not a valid capabilities level`,
		},
		{
			name:  "unknown category",
			edit:  func(csv map[string]any) { annotations(csv)["categories"] = "Metrics Hoarding" },
			error: `"Metrics Hoarding" is not in the set of standard categories`,
		},
		{
			name:  "alm-examples not JSON",
			edit:  func(csv map[string]any) { annotations(csv)["alm-examples"] = "[{" },
			error: "invalid example",
		},
		{
			name: "owned CRD not in the bundle",
			edit: func(csv map[string]any) {
				owned := spec(csv)["customresourcedefinitions"].(map[string]any)["owned"].([]any)
				owned[0].(map[string]any)["kind"] = "Widget"
			},
			error: `owned CRD "monitoring.stevedore.dev/v1alpha1, Kind=Widget" not found in bundle`,
		},
		{
			name:  "bad minKubeVersion",
			edit:  func(csv map[string]any) { spec(csv)["minKubeVersion"] = "one-point-twenty-eight" },
			error: "csv.Spec.MinKubeVersion has an invalid value",
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			dir := copyBundle(t)
			csvPath := filepath.Join(dir, "manifests", csvFileName)
			raw, err := os.ReadFile(csvPath)
			if err != nil {
				t.Fatal(err)
			}
			var csv map[string]any
			if err := yaml.Unmarshal(raw, &csv); err != nil {
				t.Fatal(err)
			}
			tc.edit(csv)
			out, err := yaml.Marshal(csv)
			if err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(csvPath, out, 0o644); err != nil {
				t.Fatal(err)
			}
			errs, _ := validateBundle(t, dir)
			if !containsAny(errs, tc.error) {
				t.Fatalf("no validation error containing %q; errors: %q", tc.error, errs)
			}
		})
	}
}

func spec(csv map[string]any) map[string]any { return csv["spec"].(map[string]any) }

func annotations(csv map[string]any) map[string]any {
	return csv["metadata"].(map[string]any)["annotations"].(map[string]any)
}

func containsAny(list []string, sub string) bool {
	for _, s := range list {
		if strings.Contains(s, sub) {
			return true
		}
	}
	return false
}

func copyBundle(t *testing.T) string {
	t.Helper()
	dst := filepath.Join(t.TempDir(), "bundle")
	src := filepath.Join(repoRoot, "bundle")
	for _, sub := range []string{"manifests", "metadata"} {
		entries, err := os.ReadDir(filepath.Join(src, sub))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.MkdirAll(filepath.Join(dst, sub), 0o755); err != nil {
			t.Fatal(err)
		}
		for _, e := range entries {
			data, err := os.ReadFile(filepath.Join(src, sub, e.Name()))
			if err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(filepath.Join(dst, sub, e.Name()), data, 0o644); err != nil {
				t.Fatal(err)
			}
		}
	}
	return dst
}

// TestBundleFormat checks what operator-registry's ValidateBundleFormat
// checks: the annotations, and that bundle.Dockerfile carries the same
// labels and copies the directories they name.
func TestBundleFormat(t *testing.T) {
	raw, err := os.ReadFile(filepath.Join(repoRoot, "bundle", "metadata", "annotations.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	var ann struct {
		Annotations map[string]string `json:"annotations"`
	}
	if err := yaml.UnmarshalStrict(raw, &ann); err != nil {
		t.Fatalf("parse annotations.yaml: %v", err)
	}
	want := map[string]string{
		"operators.operatorframework.io.bundle.mediatype.v1":       "registry+v1",
		"operators.operatorframework.io.bundle.manifests.v1":       "manifests/",
		"operators.operatorframework.io.bundle.metadata.v1":        "metadata/",
		"operators.operatorframework.io.bundle.package.v1":         "stevedore",
		"operators.operatorframework.io.bundle.channels.v1":        "alpha",
		"operators.operatorframework.io.bundle.channel.default.v1": "alpha",
	}
	for k, v := range want {
		if got := ann.Annotations[k]; got != v {
			t.Errorf("annotations.yaml %s = %q, want %q", k, got, v)
		}
	}
	df, err := os.ReadFile(filepath.Join(repoRoot, dockerfile))
	if err != nil {
		t.Fatal(err)
	}
	labels := map[string]string{}
	var copies []string
	for _, line := range strings.Split(string(df), "\n") {
		if l, ok := strings.CutPrefix(line, "LABEL "); ok {
			k, v, _ := strings.Cut(l, "=")
			labels[k] = v
		}
		if c, ok := strings.CutPrefix(line, "COPY "); ok {
			copies = append(copies, c)
		}
	}
	for k, v := range ann.Annotations {
		if labels[k] != v {
			t.Errorf("%s LABEL %s = %q, annotations.yaml says %q", dockerfile, k, labels[k], v)
		}
	}
	if len(labels) != len(ann.Annotations) {
		t.Errorf("%s has %d labels, annotations.yaml %d", dockerfile, len(labels), len(ann.Annotations))
	}
	wantCopies := []string{"bundle/manifests /manifests/", "bundle/metadata /metadata/"}
	if strings.Join(copies, "|") != strings.Join(wantCopies, "|") {
		t.Errorf("%s copies %q, want %q", dockerfile, copies, wantCopies)
	}
}

// TestBundleUpToDate regenerates the bundle with the Makefile's defaults and
// compares it with the committed one.
func TestBundleUpToDate(t *testing.T) {
	out := filepath.Join(t.TempDir(), "bundle")
	b, err := Generate(Options{
		Root: repoRoot, Out: out, Registry: DefaultRegistry, Version: DefaultVersion,
		Package: DefaultPackage, Channels: DefaultChannel, DefaultChannel: DefaultChannel,
	})
	if err != nil {
		t.Fatal(err)
	}
	for _, w := range b.Warnings {
		t.Errorf("generator warning: %s", w)
	}
	committed := map[string][]byte{}
	df, err := os.ReadFile(filepath.Join(repoRoot, dockerfile))
	if err != nil {
		t.Fatal(err)
	}
	committed[dockerfile] = df
	for _, sub := range []string{"manifests", "metadata"} {
		entries, err := os.ReadDir(filepath.Join(repoRoot, "bundle", sub))
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range entries {
			data, err := os.ReadFile(filepath.Join(repoRoot, "bundle", sub, e.Name()))
			if err != nil {
				t.Fatal(err)
			}
			committed["bundle/"+sub+"/"+e.Name()] = data
		}
	}
	var names []string
	for n := range b.Files {
		names = append(names, n)
	}
	for n := range committed {
		if _, ok := b.Files[n]; !ok {
			names = append(names, n)
		}
	}
	sort.Strings(names)
	for _, n := range names {
		got, inGen := b.Files[n]
		have, inRepo := committed[n]
		switch {
		case !inRepo:
			t.Errorf("%s is generated but not committed: run make bundle", n)
		case !inGen:
			t.Errorf("%s is committed but no longer generated: run make bundle", n)
		case !bytes.Equal(got, have):
			t.Errorf("%s differs from what make bundle generates: run make bundle\n%s", n, firstDiff(have, got))
		}
	}
}

// firstDiff shows the first differing line.
func firstDiff(have, want []byte) string {
	a, b := strings.Split(string(have), "\n"), strings.Split(string(want), "\n")
	for i := 0; i < len(a) || i < len(b); i++ {
		var x, y string
		if i < len(a) {
			x = a[i]
		}
		if i < len(b) {
			y = b[i]
		}
		if x != y {
			return "line " + strconv.Itoa(i+1) + ":\n  committed: " + x + "\n  generated: " + y
		}
	}
	return ""
}

// TestIconIsTheSVG keeps the base CSV's icon and config/manifests/icon.svg
// the same picture.
func TestIconIsTheSVG(t *testing.T) {
	svg, err := os.ReadFile(filepath.Join(repoRoot, "config/manifests/icon.svg"))
	if err != nil {
		t.Fatal(err)
	}
	raw, err := os.ReadFile(filepath.Join(repoRoot, baseCSVPath))
	if err != nil {
		t.Fatal(err)
	}
	var csv struct {
		Spec struct {
			Icon []struct {
				Data      string `json:"base64data"`
				MediaType string `json:"mediatype"`
			} `json:"icon"`
		} `json:"spec"`
	}
	if err := yaml.Unmarshal(raw, &csv); err != nil {
		t.Fatal(err)
	}
	if len(csv.Spec.Icon) != 1 || csv.Spec.Icon[0].MediaType != "image/svg+xml" {
		t.Fatalf("base CSV icon = %+v, want one image/svg+xml", csv.Spec.Icon)
	}
	got, err := base64.StdEncoding.DecodeString(csv.Spec.Icon[0].Data)
	if err != nil {
		t.Fatalf("decode icon: %v", err)
	}
	if !bytes.Equal(got, svg) {
		t.Errorf("base CSV icon is not config/manifests/icon.svg: run base64 -w0 config/manifests/icon.svg")
	}
}
