// Package release tests `make release` (hack/release.sh): what it writes
// installs on a real kube-apiserver, every image is pinned to the release,
// the packaged chart and the bundle carry the version, and the work tree is
// left as it was.
package release

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/envtest"
	"sigs.k8s.io/yaml"
)

const (
	version  = "v1.2.3-rc.1"
	registry = "registry.example.com/platform"
	root     = "../.."
)

func requireTools(t *testing.T) {
	t.Helper()
	if testing.Short() {
		t.Skip("-short: builds the release and starts a real kube-apiserver")
	}
	for _, env := range []string{"STEVEDORE_HELM", "STEVEDORE_KUBE_BIN", "KUBEBUILDER_ASSETS"} {
		if os.Getenv(env) == "" {
			t.Fatalf(`%s is not set: run the tests with make test, or eval "$(hack/testbin.sh)"`, env)
		}
	}
}

// release runs hack/release.sh without the image archives (those are
// hack/imagebuild's, tested there).
func release(t *testing.T, dist string, env ...string) (string, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "hack/release.sh")
	cmd.Dir = root
	cmd.Env = append(os.Environ(), append([]string{"IMAGES=0", "DIST=" + dist}, env...)...)
	out, err := cmd.CombinedOutput()
	return string(out), err
}

func gitStatus(t *testing.T) string {
	t.Helper()
	out, err := exec.Command("git", "-C", root, "status", "--porcelain", "--untracked-files=all").Output()
	if err != nil {
		t.Skipf("not a git work tree: %v", err)
	}
	return string(out)
}

func parseDocs(t *testing.T, raw []byte) []*unstructured.Unstructured {
	t.Helper()
	var out []*unstructured.Unstructured
	r := utilyaml.NewYAMLReader(bufio.NewReader(bytes.NewReader(raw)))
	for {
		doc, err := r.Read()
		if errors.Is(err, io.EOF) {
			return out
		}
		if err != nil {
			t.Fatal(err)
		}
		u := &unstructured.Unstructured{}
		if err := yaml.Unmarshal(doc, &u.Object); err != nil {
			t.Fatalf("parse: %v\n%s", err, doc)
		}
		if len(u.Object) > 0 {
			out = append(out, u)
		}
	}
}

func TestReleaseInstallsPinned(t *testing.T) {
	requireTools(t)
	before := gitStatus(t)
	dist := t.TempDir()
	if out, err := release(t, dist, "VERSION="+version, "REGISTRY="+registry); err != nil {
		t.Fatalf("hack/release.sh: %v\n%s", err, out)
	}
	if after := gitStatus(t); after != before {
		t.Errorf("make release changed the work tree:\nbefore:\n%s\nafter:\n%s", before, after)
	}
	manager := registry + "/stevedore-manager:" + version
	agent := registry + "/stevedore-agent:" + version

	t.Run("install.yaml", func(t *testing.T) {
		raw, err := os.ReadFile(filepath.Join(dist, "install.yaml"))
		if err != nil {
			t.Fatal(err)
		}
		docs := parseDocs(t, raw)
		kinds := map[string]int{}
		var deploy *appsv1.Deployment
		for _, u := range docs {
			kinds[u.GetKind()]++
			if u.GetKind() == "Deployment" {
				deploy = &appsv1.Deployment{}
				b, _ := yaml.Marshal(u.Object)
				if err := yaml.Unmarshal(b, deploy); err != nil {
					t.Fatal(err)
				}
			}
		}
		for kind, n := range map[string]int{"Namespace": 1, "CustomResourceDefinition": 3, "ServiceAccount": 1, "ClusterRole": 1, "ClusterRoleBinding": 1, "Deployment": 1} {
			if kinds[kind] < n {
				t.Errorf("install.yaml has %d %s, want at least %d (kinds: %v)", kinds[kind], kind, n, kinds)
			}
		}
		if deploy == nil {
			t.Fatal("no Deployment in install.yaml")
		}
		c := deploy.Spec.Template.Spec.Containers[0]
		if c.Image != manager {
			t.Errorf("manager image %q, want %q", c.Image, manager)
		}
		if !strings.Contains(strings.Join(c.Args, " "), "--agent-image="+agent) {
			t.Errorf("manager args %v lack --agent-image=%s", c.Args, agent)
		}
		if strings.Contains(string(raw), ":latest") {
			t.Error("install.yaml still references a :latest image")
		}

		// `kubectl apply --server-side -f install.yaml` on a real
		// kube-apiserver: the documented install command, as a user runs it.
		env := &envtest.Environment{}
		cfg, err := env.Start()
		if err != nil {
			t.Fatalf("start envtest: %v", err)
		}
		t.Cleanup(func() { _ = env.Stop() })
		user, err := env.AddUser(envtest.User{Name: "admin", Groups: []string{"system:masters"}}, nil)
		if err != nil {
			t.Fatal(err)
		}
		kubeconfig, err := user.KubeConfig()
		if err != nil {
			t.Fatal(err)
		}
		kcPath := filepath.Join(t.TempDir(), "kubeconfig")
		if err := os.WriteFile(kcPath, kubeconfig, 0o600); err != nil {
			t.Fatal(err)
		}
		kubectl := exec.Command(filepath.Join(os.Getenv("STEVEDORE_KUBE_BIN"), "kubectl"), "--kubeconfig", kcPath,
			"apply", "--server-side", "-f", filepath.Join(dist, "install.yaml"))
		if out, err := kubectl.CombinedOutput(); err != nil {
			t.Fatalf("kubectl apply --server-side -f install.yaml: %v\n%s", err, out)
		}
		cl, err := client.New(cfg, client.Options{})
		if err != nil {
			t.Fatal(err)
		}
		var got appsv1.Deployment
		if err := cl.Get(context.Background(), client.ObjectKey{Namespace: "stevedore-system", Name: "stevedore-manager"}, &got); err != nil {
			t.Fatalf("the manager Deployment after applying install.yaml: %v", err)
		}
		if got.Spec.Template.Spec.Containers[0].Image != manager {
			t.Errorf("applied manager image %q, want %q", got.Spec.Template.Spec.Containers[0].Image, manager)
		}
	})

	t.Run("chart", func(t *testing.T) {
		tgz := filepath.Join(dist, "stevedore-"+strings.TrimPrefix(version, "v")+".tgz")
		show, err := exec.Command(os.Getenv("STEVEDORE_HELM"), "show", "chart", tgz).CombinedOutput()
		if err != nil {
			t.Fatalf("helm show chart %s: %v\n%s", tgz, err, show)
		}
		var chart struct{ Version, AppVersion string }
		if err := yaml.Unmarshal(show, &chart); err != nil {
			t.Fatal(err)
		}
		if chart.Version != strings.TrimPrefix(version, "v") || chart.AppVersion != version {
			t.Errorf("packaged chart version %q appVersion %q, want %q and %q", chart.Version, chart.AppVersion, strings.TrimPrefix(version, "v"), version)
		}
		rendered, err := exec.Command(os.Getenv("STEVEDORE_HELM"), "template", "stevedore", tgz, "-n", "stevedore-system").CombinedOutput()
		if err != nil {
			t.Fatalf("helm template %s: %v\n%s", tgz, err, rendered)
		}
		for _, want := range []string{manager, "--agent-image=" + agent} {
			if !strings.Contains(string(rendered), want) {
				t.Errorf("packaged chart with default values does not render %q", want)
			}
		}
	})

	t.Run("bundle", func(t *testing.T) {
		csvs, err := filepath.Glob(filepath.Join(dist, "bundle", "manifests", "*.clusterserviceversion.yaml"))
		if err != nil || len(csvs) != 1 {
			t.Fatalf("want one CSV in the release bundle, got %v (%v)", csvs, err)
		}
		raw, err := os.ReadFile(csvs[0])
		if err != nil {
			t.Fatal(err)
		}
		var csv struct {
			Metadata struct{ Name string }
			Spec     struct{ Version string }
		}
		if err := yaml.Unmarshal(raw, &csv); err != nil {
			t.Fatal(err)
		}
		if csv.Metadata.Name != "stevedore."+version || csv.Spec.Version != strings.TrimPrefix(version, "v") {
			t.Errorf("CSV %s version %s, want stevedore.%s version %s", csv.Metadata.Name, csv.Spec.Version, version, strings.TrimPrefix(version, "v"))
		}
		for _, want := range []string{manager, agent} {
			if !strings.Contains(string(raw), want) {
				t.Errorf("CSV does not reference %s", want)
			}
		}
	})
}

func TestReleaseRejectsBadInput(t *testing.T) {
	if testing.Short() {
		t.Skip("-short")
	}
	for _, tc := range []struct {
		env  []string
		want string
	}{
		{env: nil, want: "VERSION=<unset>: want a semantic version"},
		{env: []string{"VERSION=1.2.3"}, want: "VERSION=1.2.3: want a semantic version with a leading v"},
		{env: []string{"VERSION=v1.2"}, want: "VERSION=v1.2"},
		{env: []string{"VERSION=v1.2.3", "REGISTRY=ghcr.io/team/"}, want: "without a trailing slash"},
	} {
		dist := t.TempDir()
		env := append([]string{"VERSION="}, tc.env...)
		out, err := release(t, dist, env...)
		if err == nil {
			t.Errorf("%v: release succeeded, want an error", tc.env)
			continue
		}
		if !strings.Contains(out, tc.want) {
			t.Errorf("%v: output %q, want it to say %q", tc.env, out, tc.want)
		}
		if entries, _ := os.ReadDir(dist); len(entries) > 0 {
			t.Errorf("%v: wrote %d file(s) despite the error", tc.env, len(entries))
		}
	}
}
