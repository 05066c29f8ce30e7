// Package chart tests the Helm chart charts/stevedore with the real helm CLI
// (STEVEDORE_HELM, from hack/testbin.sh helm) and a real kube-apiserver
// (envtest, KUBEBUILDER_ASSETS): lint, golden renders, the values schema,
// the rendering of each mode, server-side dry-run of every object, and drift
// from the generated manifests in config/.
package chart

import (
	"bufio"
	"bytes"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"sigs.k8s.io/yaml"
)

var update = flag.Bool("update", false, "rewrite the golden files under testdata/")

const (
	chartDir    = "../../charts/stevedore"
	releaseName = "stevedore"
	releaseNS   = "stevedore-system"
	// nondefault sets every value away from its default.
	nondefault = "testdata/nondefault.values.yaml"
)

// helmBin is the helm CLI built by hack/testbin.sh; tests that need it skip
// without it.
func helmBin(t *testing.T) string {
	t.Helper()
	h := os.Getenv("STEVEDORE_HELM")
	if h == "" {
		t.Skip(`STEVEDORE_HELM is not set: eval "$(hack/testbin.sh helm)" to build helm`)
	}
	return h
}

// helm runs the helm CLI and returns its stdout, or an error carrying stderr.
func helm(t *testing.T, args ...string) (string, error) {
	t.Helper()
	cmd := exec.Command(helmBin(t), args...)
	// No user configuration, repositories or cache of the machine leak in.
	home := t.TempDir()
	cmd.Env = append(os.Environ(), "HELM_CONFIG_HOME="+home, "HELM_CACHE_HOME="+home, "HELM_DATA_HOME="+home)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return stdout.String(), fmt.Errorf("helm %s: %w\n%s%s", strings.Join(args, " "), err, stderr.String(), stdout.String())
	}
	return stdout.String(), nil
}

// render runs helm template for the release stevedore in stevedore-system.
func render(t *testing.T, args ...string) string {
	t.Helper()
	out, err := helm(t, append([]string{"template", releaseName, chartDir, "--namespace", releaseNS}, args...)...)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// parseDocs splits a multi-document YAML stream into objects, skipping
// empty documents.
func parseDocs(t *testing.T, stream string) []*unstructured.Unstructured {
	t.Helper()
	var out []*unstructured.Unstructured
	r := utilyaml.NewYAMLReader(bufio.NewReader(strings.NewReader(stream)))
	for {
		doc, err := r.Read()
		if errors.Is(err, io.EOF) {
			return out
		}
		if err != nil {
			t.Fatalf("read rendered YAML: %v", err)
		}
		var m map[string]any
		if err := yaml.Unmarshal(doc, &m); err != nil {
			t.Fatalf("parse rendered YAML: %v\n%s", err, doc)
		}
		if len(m) == 0 {
			continue
		}
		out = append(out, &unstructured.Unstructured{Object: m})
	}
}

// objects indexes rendered objects by "Kind namespace/name".
func objects(t *testing.T, stream string) map[string]*unstructured.Unstructured {
	t.Helper()
	m := map[string]*unstructured.Unstructured{}
	for _, u := range parseDocs(t, stream) {
		k := key(u.GetKind(), u.GetNamespace(), u.GetName())
		if _, dup := m[k]; dup {
			t.Fatalf("rendered twice: %s", k)
		}
		m[k] = u
	}
	return m
}

func key(kind, ns, name string) string { return kind + " " + ns + "/" + name }

func kinds(objs map[string]*unstructured.Unstructured) []string {
	var out []string
	for k := range objs {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}

func TestLint(t *testing.T) {
	for _, tc := range []struct {
		name string
		args []string
	}{
		{name: "default"},
		{name: "nondefault", args: []string{"-f", nondefault}},
		{name: "namespaced", args: []string{"--set", "watchNamespaces={a,b}"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			out, err := helm(t, append([]string{"lint", "--strict", chartDir, "--namespace", releaseNS}, tc.args...)...)
			if err != nil {
				t.Fatal(err)
			}
			if !strings.Contains(out, "1 chart(s) linted, 0 chart(s) failed") {
				t.Fatalf("helm lint --strict:\n%s", out)
			}
		})
	}
}

// TestGolden renders the chart with default and with non-default values and
// compares the output byte for byte with testdata/*.golden.yaml (go test
// ./test/chart -run TestGolden -update rewrites them).
func TestGolden(t *testing.T) {
	for _, tc := range []struct {
		name string
		args []string
	}{
		{name: "default"},
		{name: "nondefault", args: []string{"-f", nondefault}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := maskGeneratedRules(t, render(t, tc.args...))
			golden := filepath.Join("testdata", tc.name+".golden.yaml")
			if *update {
				if err := os.WriteFile(golden, []byte(got), 0o644); err != nil {
					t.Fatal(err)
				}
				return
			}
			want, err := os.ReadFile(golden)
			if err != nil {
				t.Fatalf("%v (run with -update to create it)", err)
			}
			if got != string(want) {
				t.Errorf("helm template differs from %s (run with -update if the change is intended):\n%s", golden, lineDiff(string(want), got))
			}
		})
	}
}

// generatedRulesMark replaces the manager's rules in the goldens: they are
// generated from the +kubebuilder:rbac markers (files/rules.yaml), and
// TestRulesMatchConfig and TestRenderModes check them against
// config/rbac/role.yaml, so a marker change needs no golden update.
const generatedRulesMark = "rules: # files/rules.yaml, generated from config/rbac/role.yaml\n"

func maskGeneratedRules(t *testing.T, rendered string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(chartDir, "files", "rules.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	var lines []string
	for l := range strings.SplitSeq(strings.TrimSpace(string(b)), "\n") {
		if !strings.HasPrefix(l, "#") {
			lines = append(lines, l)
		}
	}
	block := "rules:\n" + strings.Join(lines, "\n") + "\n"
	if !strings.Contains(rendered, block) {
		t.Fatalf("the rendered chart does not contain the rules of files/rules.yaml as they are:\n%s", rendered)
	}
	return strings.ReplaceAll(rendered, block, generatedRulesMark)
}

// lineDiff shows the first lines where want and got differ.
func lineDiff(want, got string) string {
	w, g := strings.Split(want, "\n"), strings.Split(got, "\n")
	var b strings.Builder
	shown := 0
	for i := 0; i < max(len(w), len(g)) && shown < 20; i++ {
		var wl, gl string
		if i < len(w) {
			wl = w[i]
		}
		if i < len(g) {
			gl = g[i]
		}
		if wl != gl {
			fmt.Fprintf(&b, "line %d:\n  want %q\n  got  %q\n", i+1, wl, gl)
			shown++
		}
	}
	return b.String()
}

// TestSchemaRejects: values.schema.json fails the install of values with a
// typo or a wrong type, with a message that names the key.
func TestSchemaRejects(t *testing.T) {
	for _, tc := range []struct {
		name string
		set  []string
		want []string // all in the error
	}{
		{name: "typo at the top", set: []string{"--set", "replicaCont=2"}, want: []string{"'replicaCont' not allowed"}},
		{name: "typo nested", set: []string{"--set", "image.tagg=v1"}, want: []string{"/image", "'tagg' not allowed"}},
		{name: "typo in serviceMonitor", set: []string{"--set", "serviceMonitor.enable=true"}, want: []string{"/serviceMonitor", "'enable' not allowed"}},
		{name: "wrong type", set: []string{"--set-string", "replicaCount=two"}, want: []string{"/replicaCount", "want integer"}},
		{name: "wrong type bool", set: []string{"--set-string", "podDisruptionBudget.enabled=yes"}, want: []string{"/podDisruptionBudget/enabled", "want boolean"}},
		{name: "logFormat enum", set: []string{"--set", "logFormat=xml"}, want: []string{"/logFormat", "'json', 'console'"}},
		{name: "logLevel", set: []string{"--set", "logLevel=verbose"}, want: []string{"/logLevel"}},
		{name: "pullPolicy enum", set: []string{"--set", "image.pullPolicy=Sometimes"}, want: []string{"/image/pullPolicy"}},
		{name: "namespace name", set: []string{"--set", "watchNamespaces={Team_A}"}, want: []string{"/watchNamespaces/0", "Team_A"}},
		{name: "digest", set: []string{"--set", "image.digest=latest"}, want: []string{"/image/digest"}},
		{name: "registry trailing slash", set: []string{"--set", "image.registry=ghcr.io/x/"}, want: []string{"/image/registry"}},
		{name: "agent pullPolicy", set: []string{"--set", "agentImage.pullPolicy=Always"}, want: []string{"/agentImage", "'pullPolicy' not allowed"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			out, err := helm(t, append([]string{"template", releaseName, chartDir}, tc.set...)...)
			if err == nil {
				t.Fatalf("helm template %v succeeded, want a schema error; rendered %d bytes", tc.set, len(out))
			}
			msg := err.Error()
			if !strings.Contains(msg, "don't meet the specifications of the schema") {
				t.Errorf("not a schema error: %v", err)
			}
			for _, w := range tc.want {
				if !strings.Contains(msg, w) {
					t.Errorf("error does not contain %q:\n%s", w, msg)
				}
			}
		})
	}
	// The values that must pass the schema do.
	for _, set := range [][]string{
		{"--set", "logLevel=debug"},
		{"--set", "logLevel=4"},
		{"--set", "image.registry="},
		{"--set", "podDisruptionBudget.maxUnavailable=25%"},
	} {
		if _, err := helm(t, append([]string{"template", releaseName, chartDir}, set...)...); err != nil {
			t.Errorf("valid values rejected: %v", err)
		}
	}
}

// container returns the manager container of the rendered Deployment.
func container(t *testing.T, objs map[string]*unstructured.Unstructured, ns, name string) map[string]any {
	t.Helper()
	d, ok := objs[key("Deployment", ns, name)]
	if !ok {
		t.Fatalf("no Deployment %s/%s in %v", ns, name, kinds(objs))
	}
	cs, _, _ := unstructured.NestedSlice(d.Object, "spec", "template", "spec", "containers")
	if len(cs) != 1 {
		t.Fatalf("Deployment has %d containers, want 1", len(cs))
	}
	return cs[0].(map[string]any)
}

func args(c map[string]any) []string {
	raw, _, _ := unstructured.NestedStringSlice(c, "args")
	return raw
}

// chartAppVersion reads appVersion from Chart.yaml.
func chartAppVersion(t *testing.T) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(chartDir, "Chart.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	var c struct {
		AppVersion string `json:"appVersion"`
	}
	if err := yaml.Unmarshal(b, &c); err != nil {
		t.Fatal(err)
	}
	if c.AppVersion == "" {
		t.Fatal("Chart.yaml has no appVersion")
	}
	return c.AppVersion
}

// TestRenderModes checks what each value changes in the rendered manifests.
func TestRenderModes(t *testing.T) {
	appVersion := chartAppVersion(t)
	const mgr = "stevedore-manager"

	t.Run("defaults", func(t *testing.T) {
		objs := objects(t, render(t))
		c := container(t, objs, releaseNS, mgr)
		if got, want := c["image"], "ghcr.io/stevedore-dev/stevedore-manager:"+appVersion; got != want {
			t.Errorf("image %v, want %s (the tag defaults to appVersion)", got, want)
		}
		a := args(c)
		for _, want := range []string{
			"--leader-elect",
			"--agent-image=ghcr.io/stevedore-dev/stevedore-agent:" + appVersion,
			"--zap-log-level=info", "--zap-encoder=json",
			"--metrics-bind-address=:8080", "--health-probe-bind-address=:8081",
		} {
			if !slices.Contains(a, want) {
				t.Errorf("args %q lack %q", a, want)
			}
		}
		for _, arg := range a {
			if strings.HasPrefix(arg, "--watch-namespaces") {
				t.Errorf("cluster-wide mode passes %s", arg)
			}
		}
		for _, k := range []string{
			key("ClusterRole", "", mgr), key("ClusterRoleBinding", "", mgr),
			key("Role", releaseNS, "stevedore-leader-election"), key("RoleBinding", releaseNS, "stevedore-leader-election"),
			key("ServiceAccount", releaseNS, mgr), key("Service", releaseNS, mgr+"-metrics"),
			key("PodDisruptionBudget", releaseNS, mgr),
		} {
			if objs[k] == nil {
				t.Errorf("no %s in %v", k, kinds(objs))
			}
		}
		for k := range objs {
			if strings.HasPrefix(k, "ServiceMonitor ") {
				t.Errorf("%s rendered though serviceMonitor.enabled is false", k)
			}
			if strings.HasPrefix(k, "Role ") && k != key("Role", releaseNS, "stevedore-leader-election") {
				t.Errorf("cluster-wide mode renders %s", k)
			}
		}
		if got, _, _ := unstructured.NestedFieldNoCopy(objs[key("PodDisruptionBudget", releaseNS, mgr)].Object, "spec", "maxUnavailable"); fmt.Sprint(got) != "1" {
			t.Errorf("PodDisruptionBudget maxUnavailable %v, want 1", got)
		}
		if got, _, _ := unstructured.NestedString(c, "imagePullPolicy"); got != "IfNotPresent" {
			t.Errorf("imagePullPolicy %q, want IfNotPresent", got)
		}
	})

	t.Run("namespaced", func(t *testing.T) {
		objs := objects(t, render(t, "--set", "watchNamespaces={team-a,team-b}"))
		for k := range objs {
			if strings.HasPrefix(k, "ClusterRole") {
				t.Errorf("namespace-scoped mode renders %s", k)
			}
		}
		rules := roleRules(t)
		for _, ns := range []string{"team-a", "team-b"} {
			role := objs[key("Role", ns, mgr)]
			if role == nil || objs[key("RoleBinding", ns, mgr)] == nil {
				t.Fatalf("no Role/RoleBinding %s in %s: %v", mgr, ns, kinds(objs))
			}
			if got := rulesOf(t, role); !equalJSON(t, got, rules) {
				t.Errorf("Role in %s has rules %v, want config/rbac/role.yaml's %v", ns, got, rules)
			}
			subj, _, _ := unstructured.NestedSlice(objs[key("RoleBinding", ns, mgr)].Object, "subjects")
			if len(subj) != 1 || subj[0].(map[string]any)["namespace"] != releaseNS || subj[0].(map[string]any)["name"] != mgr {
				t.Errorf("RoleBinding in %s binds %v, want ServiceAccount %s/%s", ns, subj, releaseNS, mgr)
			}
		}
		if objs[key("Role", releaseNS, "stevedore-leader-election")] == nil {
			t.Errorf("no leader-election Role in the release namespace: %v", kinds(objs))
		}
		if a := args(container(t, objs, releaseNS, mgr)); !slices.Contains(a, "--watch-namespaces=team-a,team-b") {
			t.Errorf("args %q lack --watch-namespaces=team-a,team-b", a)
		}
	})

	t.Run("serviceMonitor", func(t *testing.T) {
		objs := objects(t, render(t, "--set", "serviceMonitor.enabled=true", "--set", "serviceMonitor.labels.release=prom"))
		sm := objs[key("ServiceMonitor", releaseNS, mgr)]
		if sm == nil {
			t.Fatalf("no ServiceMonitor: %v", kinds(objs))
		}
		if sm.GetAPIVersion() != "monitoring.coreos.com/v1" || sm.GetLabels()["release"] != "prom" {
			t.Errorf("ServiceMonitor %s labels %v", sm.GetAPIVersion(), sm.GetLabels())
		}
		svc := objs[key("Service", releaseNS, mgr+"-metrics")]
		sel, _, _ := unstructured.NestedStringMap(sm.Object, "spec", "selector", "matchLabels")
		for k, v := range sel {
			if svc.GetLabels()[k] != v {
				t.Errorf("ServiceMonitor selects %s=%s, the metrics Service has %v", k, v, svc.GetLabels())
			}
		}
	})

	t.Run("images", func(t *testing.T) {
		for _, tc := range []struct {
			set            []string
			manager, agent string
		}{
			{
				set:     []string{"--set", "image.registry=localhost:5000/dev", "--set", "image.tag=v9.9.9-dev", "--set", "agentImage.registry=localhost:5000/agents", "--set", "agentImage.tag=v1.0.0"},
				manager: "localhost:5000/dev/stevedore-manager:v9.9.9-dev", agent: "localhost:5000/agents/stevedore-agent:v1.0.0",
			},
			{
				// How the e2e suite installs locally built images: the agent follows the manager.
				set:     []string{"--set", "image.registry=example.test/dev", "--set", "image.tag=v0.0.0-12-gabcdef"},
				manager: "example.test/dev/stevedore-manager:v0.0.0-12-gabcdef", agent: "example.test/dev/stevedore-agent:v0.0.0-12-gabcdef",
			},
			{
				set:     []string{"--set", "image.registry=", "--set", "agentImage.tag=latest"},
				manager: "stevedore-manager:" + appVersion, agent: "stevedore-agent:latest",
			},
			{
				// The digest wins over the tag, and is the manager's alone.
				set:     []string{"--set", "image.digest=sha256:" + strings.Repeat("a", 64), "--set", "image.tag=v2.0.0"},
				manager: "ghcr.io/stevedore-dev/stevedore-manager@sha256:" + strings.Repeat("a", 64), agent: "ghcr.io/stevedore-dev/stevedore-agent:v2.0.0",
			},
		} {
			c := container(t, objects(t, render(t, tc.set...)), releaseNS, mgr)
			if c["image"] != tc.manager {
				t.Errorf("%v: image %v, want %s", tc.set, c["image"], tc.manager)
			}
			if a := args(c); !slices.Contains(a, "--agent-image="+tc.agent) {
				t.Errorf("%v: args %q lack --agent-image=%s", tc.set, a, tc.agent)
			}
		}
	})

	t.Run("logging and extras", func(t *testing.T) {
		c := container(t, objects(t, render(t, "--set", "logLevel=debug", "--set", "logFormat=console", "--set", "extraArgs={--status-poll-interval=1m}")), releaseNS, mgr)
		a := args(c)
		for _, want := range []string{"--zap-log-level=debug", "--zap-encoder=console", "--status-poll-interval=1m"} {
			if !slices.Contains(a, want) {
				t.Errorf("args %q lack %q", a, want)
			}
		}
	})

	t.Run("no PodDisruptionBudget", func(t *testing.T) {
		objs := objects(t, render(t, "--set", "podDisruptionBudget.enabled=false"))
		if objs[key("PodDisruptionBudget", releaseNS, mgr)] != nil {
			t.Error("PodDisruptionBudget rendered though disabled")
		}
	})
}

// TestSecurityContext: the manager pod meets the "restricted" Pod Security
// Standard with the checks of config/manager/manager.yaml.
func TestSecurityContext(t *testing.T) {
	objs := objects(t, render(t))
	d := objs[key("Deployment", releaseNS, "stevedore-manager")]
	pod, _, _ := unstructured.NestedMap(d.Object, "spec", "template", "spec")
	c := container(t, objs, releaseNS, "stevedore-manager")
	for _, tc := range []struct {
		obj  map[string]any
		path []string
		want any
	}{
		{pod, []string{"securityContext", "runAsNonRoot"}, true},
		{pod, []string{"securityContext", "seccompProfile", "type"}, "RuntimeDefault"},
		{c, []string{"securityContext", "allowPrivilegeEscalation"}, false},
		{c, []string{"securityContext", "readOnlyRootFilesystem"}, true},
		{c, []string{"securityContext", "capabilities", "drop"}, []any{"ALL"}},
		{c, []string{"livenessProbe", "httpGet", "path"}, "/healthz"},
		{c, []string{"readinessProbe", "httpGet", "path"}, "/readyz"},
		{pod, []string{"terminationGracePeriodSeconds"}, int64(10)},
	} {
		got, _, _ := unstructured.NestedFieldNoCopy(tc.obj, tc.path...)
		if fmt.Sprint(got) != fmt.Sprint(tc.want) {
			t.Errorf("%s = %v, want %v", strings.Join(tc.path, "."), got, tc.want)
		}
	}
	if r, _, _ := unstructured.NestedMap(c, "resources"); len(r) == 0 {
		t.Error("no resources on the manager container")
	}
}
