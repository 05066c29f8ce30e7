package chart

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/envtest"
)

// startAPIServer starts a real kube-apiserver + etcd (envtest) with no CRDs.
func startAPIServer(t *testing.T) (*envtest.Environment, *rest.Config) {
	t.Helper()
	if testing.Short() {
		t.Skip("-short: starts a real kube-apiserver")
	}
	if os.Getenv("KUBEBUILDER_ASSETS") == "" {
		t.Skip(`KUBEBUILDER_ASSETS is not set: eval "$(hack/testbin.sh kube etcd)" first`)
	}
	env := &envtest.Environment{}
	cfg, err := env.Start()
	if err != nil {
		t.Fatalf("start envtest: %v", err)
	}
	t.Cleanup(func() { _ = env.Stop() })
	return env, cfg
}

// TestServerSideDryRun applies everything the chart renders (CRDs first,
// for real; then every other object with server-side apply, dryRun=All and
// strict field validation) to a real kube-apiserver, so each object is valid
// against the API's own schemas and admission, for default and non-default
// values.
func TestServerSideDryRun(t *testing.T) {
	helmBin(t)
	_, cfg := startAPIServer(t)
	c, err := client.New(cfg, client.Options{})
	if err != nil {
		t.Fatal(err)
	}
	c = client.WithFieldValidation(c, metav1.FieldValidationStrict)
	ctx := context.Background()

	for _, tc := range []struct {
		name       string
		args       []string
		namespaces []string
	}{
		{name: "default", namespaces: []string{releaseNS}},
		{name: "nondefault", args: []string{"-f", nondefault}, namespaces: []string{releaseNS, "team-a", "team-b"}},
		{name: "namespaced", args: []string{"--set", "watchNamespaces={team-a}"}, namespaces: []string{releaseNS, "team-a"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			for _, ns := range tc.namespaces {
				if err := c.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}); err != nil && !apierrors.IsAlreadyExists(err) {
					t.Fatal(err)
				}
			}
			docs := parseDocs(t, render(t, append([]string{"--include-crds"}, tc.args...)...))
			var crds, rest []*unstructured.Unstructured
			for _, u := range docs {
				if u.GetKind() == "CustomResourceDefinition" {
					crds = append(crds, u)
				} else {
					rest = append(rest, u)
				}
			}
			if len(crds) != 3 {
				t.Errorf("rendered %d CRDs with --include-crds, want 3", len(crds))
			}
			for _, u := range crds {
				if err := c.Apply(ctx, client.ApplyConfigurationFromUnstructured(u), client.FieldOwner("chart-test"), client.ForceOwnership); err != nil {
					t.Errorf("apply CRD %s: %v", u.GetName(), err)
				}
			}
			applied := 0
			for _, u := range rest {
				if u.GetKind() == "ServiceMonitor" {
					// envtest has no prometheus-operator CRDs; TestRenderModes checks its shape.
					t.Logf("not applying ServiceMonitor %s: no monitoring.coreos.com CRDs here", u.GetName())
					continue
				}
				if err := c.Apply(ctx, client.ApplyConfigurationFromUnstructured(u), client.FieldOwner("chart-test"), client.ForceOwnership, client.DryRunAll); err != nil {
					t.Errorf("server-side dry-run of %s %s/%s: %v", u.GetKind(), u.GetNamespace(), u.GetName(), err)
				}
				applied++
			}
			if applied < 7 {
				t.Errorf("dry-ran only %d objects", applied)
			}
			// Dry run persisted nothing.
			var sa corev1.ServiceAccountList
			if err := c.List(ctx, &sa, client.InNamespace(releaseNS), client.MatchingLabels{"app.kubernetes.io/managed-by": "Helm"}); err != nil {
				t.Fatal(err)
			}
			if len(sa.Items) != 0 {
				t.Errorf("dry run created %d ServiceAccounts", len(sa.Items))
			}
		})
	}
}

// TestInstallNotes runs helm install --dry-run=server against the real
// apiserver: the release renders with the cluster's capabilities, and
// NOTES.txt says what to apply next.
func TestInstallNotes(t *testing.T) {
	helmBin(t)
	env, _ := startAPIServer(t)
	user, err := env.AddUser(envtest.User{Name: "admin", Groups: []string{"system:masters"}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	kc, err := user.KubeConfig()
	if err != nil {
		t.Fatal(err)
	}
	kubeconfig := filepath.Join(t.TempDir(), "kubeconfig")
	if err := os.WriteFile(kubeconfig, kc, 0o600); err != nil {
		t.Fatal(err)
	}
	out, err := helm(t, "install", releaseName, chartDir, "--namespace", releaseNS, "--create-namespace", "--dry-run=server", "--kubeconfig", kubeconfig)
	if err != nil {
		t.Fatal(err)
	}
	i := strings.Index(out, "NOTES:")
	if i < 0 {
		t.Fatalf("helm install printed no NOTES:\n%s", out)
	}
	notes := out[i:]
	for _, want := range []string{
		"rollout status deployment/stevedore-manager",
		"config/samples/minio.yaml", "config/samples/shipper.yaml", "config/samples/storegateway.yaml",
		"kubectl get storegateways", "It watches every namespace",
	} {
		if !strings.Contains(notes, want) {
			t.Errorf("NOTES lack %q:\n%s", want, notes)
		}
	}
}
