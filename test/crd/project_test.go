package crd_test

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"sigs.k8s.io/yaml"

	"github.com/stevedore-dev/stevedore/api/v1alpha1"
)

// project is the part of kubebuilder's PROJECT file (version 3) that
// describes the layout.
type project struct {
	Domain    string   `json:"domain"`
	Layout    []string `json:"layout"`
	Repo      string   `json:"repo"`
	Name      string   `json:"projectName"`
	Version   string   `json:"version"`
	Resources []struct {
		API struct {
			CRDVersion string `json:"crdVersion"`
			Namespaced bool   `json:"namespaced"`
		} `json:"api"`
		Controller bool   `json:"controller"`
		Domain     string `json:"domain"`
		Group      string `json:"group"`
		Kind       string `json:"kind"`
		Path       string `json:"path"`
		Version    string `json:"version"`
	} `json:"resources"`
}

// TestProjectFileMatchesAPI keeps the kubebuilder PROJECT file true to the
// code: the same domain, group, version and kinds as the API package and the
// generated CRDs, so kubebuilder (and readers) see the real layout.
func TestProjectFileMatchesAPI(t *testing.T) {
	raw, err := os.ReadFile("../../PROJECT")
	if err != nil {
		t.Fatal(err)
	}
	var p project
	if err := yaml.UnmarshalStrict(raw, &p, yaml.DisallowUnknownFields); err != nil {
		// Unknown fields are fine in general, but this file is small and
		// ours: a typo there should not go unnoticed.
		t.Fatalf("parse PROJECT: %v", err)
	}
	if p.Version != "3" || !slices.Contains(p.Layout, "go.kubebuilder.io/v4") {
		t.Errorf("PROJECT version %q layout %v, want version 3 with go.kubebuilder.io/v4", p.Version, p.Layout)
	}
	if p.Repo != "github.com/stevedore-dev/stevedore" {
		t.Errorf("repo %q, want the Go module path", p.Repo)
	}

	scheme := runtime.NewScheme()
	if err := v1alpha1.AddToScheme(scheme); err != nil {
		t.Fatal(err)
	}
	gv := v1alpha1.GroupVersion
	var apiKinds []string
	for kind := range scheme.KnownTypes(gv) {
		if strings.HasSuffix(kind, "List") || strings.HasSuffix(kind, "Options") || strings.HasSuffix(kind, "Event") {
			continue
		}
		apiKinds = append(apiKinds, kind)
	}
	crdKinds := map[string]apiextensionsv1.ResourceScope{}
	files, err := filepath.Glob("../../config/crd/bases/*.yaml")
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range files {
		raw, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		var crd apiextensionsv1.CustomResourceDefinition
		if err := yaml.Unmarshal(raw, &crd); err != nil {
			t.Fatalf("%s: %v", f, err)
		}
		crdKinds[crd.Spec.Names.Kind] = crd.Spec.Scope
	}

	var projectKinds []string
	for _, r := range p.Resources {
		projectKinds = append(projectKinds, r.Kind)
		if r.Group+"."+r.Domain != gv.Group || r.Group+"."+p.Domain != gv.Group {
			t.Errorf("%s: group %q domain %q, want %s", r.Kind, r.Group, r.Domain, gv.Group)
		}
		if r.Version != gv.Version || r.Path != p.Repo+"/api/"+gv.Version {
			t.Errorf("%s: version %q path %q, want %s in %s/api/%s", r.Kind, r.Version, r.Path, gv.Version, p.Repo, gv.Version)
		}
		scope, ok := crdKinds[r.Kind]
		if !ok {
			t.Errorf("%s: no CRD in config/crd/bases", r.Kind)
		}
		if r.API.CRDVersion != "v1" || r.API.Namespaced != (scope == apiextensionsv1.NamespaceScoped) {
			t.Errorf("%s: crdVersion %q namespaced %v, CRD scope %s", r.Kind, r.API.CRDVersion, r.API.Namespaced, scope)
		}
		if !r.Controller {
			t.Errorf("%s: controller false, but every kind has a reconciler", r.Kind)
		}
	}
	slices.Sort(apiKinds)
	slices.Sort(projectKinds)
	if !slices.Equal(apiKinds, projectKinds) {
		t.Errorf("PROJECT kinds %v, API kinds %v", projectKinds, apiKinds)
	}
	if len(crdKinds) != len(apiKinds) {
		t.Errorf("%d CRDs for %d API kinds", len(crdKinds), len(apiKinds))
	}
}
