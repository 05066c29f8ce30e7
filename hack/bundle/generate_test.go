package main

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	operatorsv1alpha1 "github.com/operator-framework/api/pkg/operators/v1alpha1"
	rbacv1 "k8s.io/api/rbac/v1"
	"sigs.k8s.io/yaml"
)

// fixtureRoot copies the generator's inputs from the repository into a
// temporary root, then applies edits (path relative to the root -> new
// content computed from the old).
func fixtureRoot(t *testing.T, edits map[string]func(string) string) string {
	t.Helper()
	root := t.TempDir()
	for _, rel := range []string{baseCSVPath, rolePath, managerPath} {
		copyFile(t, filepath.Join(repoRoot, rel), filepath.Join(root, rel))
	}
	for _, dir := range []string{crdDir, samplesDir} {
		paths, err := filepath.Glob(filepath.Join(repoRoot, dir, "*.yaml"))
		if err != nil {
			t.Fatal(err)
		}
		for _, p := range paths {
			copyFile(t, p, filepath.Join(root, dir, filepath.Base(p)))
		}
	}
	for rel, edit := range edits {
		p := filepath.Join(root, rel)
		old, err := os.ReadFile(p)
		if err != nil && !os.IsNotExist(err) {
			t.Fatal(err)
		}
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(edit(string(old))), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return root
}

func copyFile(t *testing.T, src, dst string) {
	t.Helper()
	data, err := os.ReadFile(src)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(dst, data, 0o644); err != nil {
		t.Fatal(err)
	}
}

func defaultOptions(root string) Options {
	return Options{
		Root: root, Out: "bundle", Registry: DefaultRegistry, Version: DefaultVersion,
		Package: DefaultPackage, Channels: DefaultChannel, DefaultChannel: DefaultChannel,
	}
}

// replace returns an edit that replaces old by new, failing the test when
// the input does not contain old (so a fixture cannot silently go stale).
func replace(t *testing.T, old, new string) func(string) string {
	return func(s string) string {
		if !strings.Contains(s, old) {
			t.Fatalf("fixture edit: %q not found", old)
		}
		return strings.Replace(s, old, new, 1)
	}
}

func TestGenerateRejectsBadInput(t *testing.T) {
	cases := []struct {
		name  string
		edits func(t *testing.T) map[string]func(string) string
		opts  func(*Options)
		error string
	}{
		{
			name: "descriptor path not in the schema",
			edits: func(t *testing.T) map[string]func(string) string {
				return map[string]func(string) string{baseCSVPath: replace(t, "- path: s3.endpoint\n", "- path: s3.endpont\n")}
			},
			error: `Bucket v1alpha1 specDescriptor "s3.endpont": spec.s3 has no field "endpont"`,
		},
		{
			name: "status descriptor path not in the schema",
			edits: func(t *testing.T) map[string]func(string) string {
				return map[string]func(string) string{baseCSVPath: replace(t, "- path: readyShards\n", "- path: shardsReady\n")}
			},
			error: `StoreGateway v1alpha1 statusDescriptor "shardsReady": status has no field "shardsReady"`,
		},
		{
			name: "base CSV owns a CRD that does not exist",
			edits: func(t *testing.T) map[string]func(string) string {
				return map[string]func(string) string{baseCSVPath: replace(t,
					"- name: buckets.monitoring.stevedore.dev\n", "- name: widgets.monitoring.stevedore.dev\n")}
			},
			error: "base CSV lists owned CRDs that config/crd/bases does not serve: widgets.monitoring.stevedore.dev v1alpha1",
		},
		{
			name: "base CSV kind differs from the CRD",
			edits: func(t *testing.T) map[string]func(string) string {
				return map[string]func(string) string{baseCSVPath: replace(t, "kind: StoreGateway\n", "kind: StorGateway\n")}
			},
			error: "owned CRD storegateways.monitoring.stevedore.dev has kind StorGateway, the CRD says StoreGateway",
		},
		{
			name: "typo in the base CSV",
			edits: func(t *testing.T) map[string]func(string) string {
				return map[string]func(string) string{baseCSVPath: replace(t, "  minKubeVersion:", "  minKubeVersions:")}
			},
			error: `parse base CSV config/manifests/bases/stevedore.clusterserviceversion.yaml: error unmarshaling JSON: while decoding JSON: json: unknown field "minKubeVersions"`,
		},
		{
			name: "sample of a kind the bundle does not own",
			edits: func(t *testing.T) map[string]func(string) string {
				return map[string]func(string) string{samplesDir + "/zz-widget.yaml": func(string) string {
					return "apiVersion: monitoring.stevedore.dev/v1alpha1\nkind: Widget\nmetadata:\n  name: w\n"
				}}
			},
			error: `sample Widget "w" in`,
		},
		{
			name: "leases rule shared with another group",
			edits: func(t *testing.T) map[string]func(string) string {
				return map[string]func(string) string{rolePath: replace(t, "  - coordination.k8s.io\n", "  - coordination.k8s.io\n  - apps\n")}
			},
			error: `rule for leases also covers API groups ["coordination.k8s.io" "apps"]`,
		},
		{
			name: "manager.yaml without a Deployment",
			edits: func(t *testing.T) map[string]func(string) string {
				return map[string]func(string) string{managerPath: func(string) string {
					return "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: system\n"
				}}
			},
			error: "no Deployment in config/manager/manager.yaml",
		},
		{
			name:  "version not semver",
			opts:  func(o *Options) { o.Version = "1.2" },
			error: `version "1.2" is not semver MAJOR.MINOR.PATCH`,
		},
		{
			name:  "registry with a scheme",
			opts:  func(o *Options) { o.Registry = "https://ghcr.io/stevedore-dev" },
			error: `registry "https://ghcr.io/stevedore-dev" must be host[/path]`,
		},
		{
			name:  "default channel not among the channels",
			opts:  func(o *Options) { o.Channels = "alpha"; o.DefaultChannel = "stable" },
			error: `default channel "stable" is not one of the channels ["alpha"]`,
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var edits map[string]func(string) string
			if tc.edits != nil {
				edits = tc.edits(t)
			}
			opts := defaultOptions(fixtureRoot(t, edits))
			if tc.opts != nil {
				tc.opts(&opts)
			}
			_, err := Generate(opts)
			if err == nil {
				t.Fatalf("Generate succeeded, want an error containing %q", tc.error)
			}
			if !strings.Contains(err.Error(), tc.error) {
				t.Fatalf("error %q does not contain %q", err, tc.error)
			}
		})
	}
}

func readCSV(t *testing.T, b *Bundle) *operatorsv1alpha1.ClusterServiceVersion {
	t.Helper()
	raw, ok := b.Files[b.Dir+"/manifests/"+csvFileName]
	if !ok {
		t.Fatalf("no CSV among %d files", len(b.Files))
	}
	csv := &operatorsv1alpha1.ClusterServiceVersion{}
	if err := yaml.UnmarshalStrict(raw, csv); err != nil {
		t.Fatalf("parse generated CSV: %v", err)
	}
	return csv
}

func TestGenerateVersionRegistryAndOut(t *testing.T) {
	opts := defaultOptions(fixtureRoot(t, nil))
	opts.Version = "v1.2.3-rc.1"
	opts.Registry = "registry.example.com/team"
	opts.Out = filepath.Join("dist", "olm")
	b, err := Generate(opts)
	if err != nil {
		t.Fatal(err)
	}
	csv := readCSV(t, b)
	if csv.Name != "stevedore.v1.2.3-rc.1" || csv.Spec.Version.String() != "1.2.3-rc.1" {
		t.Errorf("CSV name %q version %q, want stevedore.v1.2.3-rc.1 and 1.2.3-rc.1", csv.Name, csv.Spec.Version.String())
	}
	manager := "registry.example.com/team/stevedore-manager:v1.2.3-rc.1"
	agent := "registry.example.com/team/stevedore-agent:v1.2.3-rc.1"
	if got := csv.Annotations["containerImage"]; got != manager {
		t.Errorf("containerImage = %q, want %q", got, manager)
	}
	c := csv.Spec.InstallStrategy.StrategySpec.DeploymentSpecs[0].Spec.Template.Spec.Containers[0]
	if c.Image != manager {
		t.Errorf("manager image = %q, want %q", c.Image, manager)
	}
	if !slices.Contains(c.Args, "--agent-image="+agent) {
		t.Errorf("manager args %q lack --agent-image=%s", c.Args, agent)
	}
	var related []string
	for _, ri := range csv.Spec.RelatedImages {
		related = append(related, ri.Image)
	}
	if !slices.Contains(related, manager) || !slices.Contains(related, agent) {
		t.Errorf("relatedImages %q lack %s or %s", related, manager, agent)
	}
	for name := range b.Files {
		if name != dockerfile && !strings.HasPrefix(name, "olm/") {
			t.Errorf("file %s is not under olm/", name)
		}
	}
	if df := string(b.Files[dockerfile]); !strings.Contains(df, "COPY olm/manifests /manifests/\n") ||
		!strings.Contains(df, "COPY olm/metadata /metadata/\n") {
		t.Errorf("bundle.Dockerfile does not copy olm/:\n%s", df)
	}
}

func TestDeploymentWatchesTargetNamespaces(t *testing.T) {
	// Flags that manager.yaml may already carry are replaced, not repeated.
	root := fixtureRoot(t, map[string]func(string) string{managerPath: replace(t,
		"            - --leader-elect\n",
		"            - --leader-elect\n            - --agent-image=stevedore-agent:dev\n            - --watch-namespaces=a,b\n")})
	b, err := Generate(defaultOptions(root))
	if err != nil {
		t.Fatal(err)
	}
	csv := readCSV(t, b)
	c := csv.Spec.InstallStrategy.StrategySpec.DeploymentSpecs[0].Spec.Template.Spec.Containers[0]
	var agentArgs, watchArgs []string
	for _, a := range c.Args {
		if strings.HasPrefix(a, "--agent-image") {
			agentArgs = append(agentArgs, a)
		}
		if strings.HasPrefix(a, "--watch-namespaces") {
			watchArgs = append(watchArgs, a)
		}
	}
	if want := []string{"--agent-image=ghcr.io/stevedore-dev/stevedore-agent:v0.1.0"}; !slices.Equal(agentArgs, want) {
		t.Errorf("agent image args %q, want %q", agentArgs, want)
	}
	if want := []string{"--watch-namespaces=$(WATCH_NAMESPACE)"}; !slices.Equal(watchArgs, want) {
		t.Errorf("watch namespaces args %q, want %q", watchArgs, want)
	}
	var found bool
	for _, e := range c.Env {
		if e.Name == watchNSEnv {
			found = e.ValueFrom != nil && e.ValueFrom.FieldRef != nil && e.ValueFrom.FieldRef.FieldPath == targetNSPath
		}
	}
	if !found {
		t.Errorf("env %+v has no %s from %s", c.Env, watchNSEnv, targetNSPath)
	}
	modes := map[operatorsv1alpha1.InstallModeType]bool{}
	for _, m := range csv.Spec.InstallModes {
		modes[m.Type] = m.Supported
	}
	for _, m := range []operatorsv1alpha1.InstallModeType{
		operatorsv1alpha1.InstallModeTypeOwnNamespace, operatorsv1alpha1.InstallModeTypeSingleNamespace,
		operatorsv1alpha1.InstallModeTypeMultiNamespace, operatorsv1alpha1.InstallModeTypeAllNamespaces,
	} {
		if !modes[m] {
			t.Errorf("install mode %s not supported", m)
		}
	}
}

func TestSplitRule(t *testing.T) {
	cases := []struct {
		name       string
		rule       rbacv1.PolicyRule
		cluster    *rbacv1.PolicyRule
		namespaced []rbacv1.PolicyRule
	}{
		{
			name:       "leases only in the operator namespace",
			rule:       rbacv1.PolicyRule{APIGroups: []string{"coordination.k8s.io"}, Resources: []string{"leases"}, Verbs: []string{"get", "update"}},
			namespaced: []rbacv1.PolicyRule{{APIGroups: []string{"coordination.k8s.io"}, Resources: []string{"leases"}, Verbs: []string{"get", "update"}}},
		},
		{
			name:       "events in both: reconcilers and leader election",
			rule:       rbacv1.PolicyRule{APIGroups: []string{"", "events.k8s.io"}, Resources: []string{"events"}, Verbs: []string{"create", "list", "patch"}},
			cluster:    &rbacv1.PolicyRule{APIGroups: []string{"", "events.k8s.io"}, Resources: []string{"events"}, Verbs: []string{"create", "list", "patch"}},
			namespaced: []rbacv1.PolicyRule{{APIGroups: []string{"", "events.k8s.io"}, Resources: []string{"events"}, Verbs: []string{"create", "patch"}}},
		},
		{
			name:    "reading events stays cluster-wide only",
			rule:    rbacv1.PolicyRule{APIGroups: []string{""}, Resources: []string{"events"}, Verbs: []string{"list"}},
			cluster: &rbacv1.PolicyRule{APIGroups: []string{""}, Resources: []string{"events"}, Verbs: []string{"list"}},
		},
		{
			name:    "workloads stay cluster-wide",
			rule:    rbacv1.PolicyRule{APIGroups: []string{"apps"}, Resources: []string{"statefulsets"}, Verbs: []string{"get"}},
			cluster: &rbacv1.PolicyRule{APIGroups: []string{"apps"}, Resources: []string{"statefulsets"}, Verbs: []string{"get"}},
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c, n, err := splitRule(tc.rule)
			if err != nil {
				t.Fatal(err)
			}
			if !jsonEqual(c, tc.cluster) || !jsonEqual(n, tc.namespaced) {
				t.Errorf("splitRule = %s, %s; want %s, %s", jsonString(c), jsonString(n), jsonString(tc.cluster), jsonString(tc.namespaced))
			}
		})
	}
}

func jsonString(v any) string {
	b, _ := json.Marshal(v)
	return string(b)
}

func jsonEqual(a, b any) bool { return jsonString(a) == jsonString(b) }

func TestALMExamplesFromSamples(t *testing.T) {
	sample := `# A comment-only document first.
---
apiVersion: v1
kind: Secret
metadata:
  name: creds
  namespace: team-a
---
apiVersion: monitoring.stevedore.dev/v1alpha1
kind: Bucket
metadata:
  name: zz-only-here
  namespace: team-a
spec:
  type: FILESYSTEM
  filesystem:
    directory: /data
status:
  type: FILESYSTEM
`
	root := fixtureRoot(t, map[string]func(string) string{
		samplesDir + "/zz-extra.yaml": func(string) string { return sample },
		// The same Bucket again in another file: listed once.
		samplesDir + "/zzz-again.yaml": func(string) string { return sample },
	})
	b, err := Generate(defaultOptions(root))
	if err != nil {
		t.Fatal(err)
	}
	var examples []map[string]any
	if err := json.Unmarshal([]byte(readCSV(t, b).Annotations["alm-examples"]), &examples); err != nil {
		t.Fatalf("alm-examples: %v", err)
	}
	var n int
	for _, ex := range examples {
		if ex["apiVersion"] == "v1" {
			t.Errorf("alm-examples holds a %v, not a CR of %s", ex["kind"], apiGroup)
		}
		md := ex["metadata"].(map[string]any)
		if _, ok := md["namespace"]; ok {
			t.Errorf("example %v keeps its namespace", md["name"])
		}
		if _, ok := ex["status"]; ok {
			t.Errorf("example %v keeps its status", md["name"])
		}
		if md["name"] == "zz-only-here" {
			n++
		}
	}
	if n != 1 {
		t.Errorf("the extra Bucket is listed %d times, want once", n)
	}
}

func TestWriteReplacesManifestsKeepsReadme(t *testing.T) {
	b, err := Generate(defaultOptions(fixtureRoot(t, nil)))
	if err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(t.TempDir(), "bundle")
	stale := filepath.Join(out, "manifests", "removed-crd.yaml")
	readme := filepath.Join(out, "README.md")
	for _, p := range []string{stale, readme} {
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte("x\n"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if err := b.Write(out); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(stale); !os.IsNotExist(err) {
		t.Errorf("stale %s survived Write (err %v)", stale, err)
	}
	if _, err := os.Stat(readme); err != nil {
		t.Errorf("README.md removed by Write: %v", err)
	}
	for name, want := range b.Files {
		got, err := os.ReadFile(filepath.Join(filepath.Dir(out), filepath.FromSlash(name)))
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got, want) {
			t.Errorf("%s on disk differs from the bundle", name)
		}
	}
	if err := b.Write(filepath.Join(t.TempDir(), "other")); err == nil {
		t.Error("Write into a directory of another name succeeded")
	}
	// Generating again gives the same bytes: no timestamps, stable order.
	again, err := Generate(defaultOptions(fixtureRoot(t, nil)))
	if err != nil {
		t.Fatal(err)
	}
	for name, want := range b.Files {
		if !bytes.Equal(again.Files[name], want) {
			t.Errorf("%s differs between two runs", name)
		}
	}
}
