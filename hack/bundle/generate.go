package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strings"

	"github.com/blang/semver/v4"
	"github.com/operator-framework/api/pkg/lib/version"
	operatorsv1alpha1 "github.com/operator-framework/api/pkg/operators/v1alpha1"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"sigs.k8s.io/yaml"
)

// Defaults of the flags; the Makefile's REGISTRY and BUNDLE_VERSION match them.
const (
	DefaultRegistry = "ghcr.io/stevedore-dev"
	DefaultVersion  = "0.1.0"
	DefaultPackage  = "stevedore"
	DefaultChannel  = "alpha"
)

// Inputs, relative to the repository root.
const (
	baseCSVPath  = "config/manifests/bases/stevedore.clusterserviceversion.yaml"
	crdDir       = "config/crd/bases"
	rolePath     = "config/rbac/role.yaml"
	managerPath  = "config/manager/manager.yaml"
	samplesDir   = "config/samples"
	apiGroup     = "monitoring.stevedore.dev"
	managerName  = "manager"
	mediaType    = "registry+v1"
	csvFileName  = "stevedore.clusterserviceversion.yaml"
	dockerfile   = "bundle.Dockerfile"
	watchNSEnv   = "WATCH_NAMESPACE"
	targetNSPath = "metadata.annotations['olm.targetNamespaces']"
)

// Options select the inputs and the version of a bundle.
type Options struct {
	// Root is the repository root holding config/.
	Root string
	// Out is the bundle directory; only its base name matters to Generate.
	Out            string
	Registry       string
	Version        string
	Package        string
	Channels       string
	DefaultChannel string
}

// Bundle is a generated bundle: file contents keyed by slash-separated paths
// relative to the parent of the bundle directory ("bundle.Dockerfile",
// "bundle/manifests/...", "bundle/metadata/annotations.yaml").
type Bundle struct {
	Dir      string // base name of the bundle directory, e.g. "bundle"
	Files    map[string][]byte
	Warnings []string
}

// semverRE is semver 2.0 without a leading v.
var semverRE = regexp.MustCompile(`^(0|[1-9][0-9]*)\.(0|[1-9][0-9]*)\.(0|[1-9][0-9]*)(-[0-9A-Za-z.-]+)?(\+[0-9A-Za-z.-]+)?$`)

func (o Options) validate() (semver.Version, error) {
	v := strings.TrimPrefix(o.Version, "v")
	if !semverRE.MatchString(v) {
		return semver.Version{}, fmt.Errorf("version %q is not semver MAJOR.MINOR.PATCH (e.g. 0.1.0 or v0.1.0)", o.Version)
	}
	sv, err := semver.Parse(v)
	if err != nil {
		return semver.Version{}, fmt.Errorf("parse version %q: %w", o.Version, err)
	}
	if o.Registry == "" || strings.HasSuffix(o.Registry, "/") || strings.Contains(o.Registry, "://") {
		return semver.Version{}, fmt.Errorf("registry %q must be host[/path] without scheme or trailing slash", o.Registry)
	}
	if o.Package == "" {
		return semver.Version{}, errors.New("package name must not be empty")
	}
	channels := splitList(o.Channels)
	if len(channels) == 0 {
		return semver.Version{}, errors.New("at least one channel is needed")
	}
	if !slices.Contains(channels, o.DefaultChannel) {
		return semver.Version{}, fmt.Errorf("default channel %q is not one of the channels %q", o.DefaultChannel, channels)
	}
	if base := filepath.Base(filepath.Clean(o.Out)); base == "." || base == ".." || base == string(filepath.Separator) {
		return semver.Version{}, fmt.Errorf("output directory %q needs a name", o.Out)
	}
	return sv, nil
}

// Generate builds the bundle from the sources under opts.Root.
func Generate(opts Options) (*Bundle, error) {
	sv, err := opts.validate()
	if err != nil {
		return nil, err
	}
	g := &generator{opts: opts, version: sv}
	g.managerImage = fmt.Sprintf("%s/stevedore-manager:v%s", opts.Registry, sv)
	g.agentImage = fmt.Sprintf("%s/stevedore-agent:v%s", opts.Registry, sv)
	b := &Bundle{Dir: filepath.Base(filepath.Clean(opts.Out)), Files: map[string][]byte{}}
	g.bundle = b

	crds, err := g.readCRDs()
	if err != nil {
		return nil, err
	}
	extra, err := g.readManagerExtras()
	if err != nil {
		return nil, err
	}
	csv, err := g.csv(crds)
	if err != nil {
		return nil, err
	}
	csvYAML, err := marshalCSV(csv)
	if err != nil {
		return nil, err
	}
	b.Files[b.Dir+"/manifests/"+csvFileName] = csvYAML
	for _, c := range crds {
		b.Files[b.Dir+"/manifests/"+c.file] = c.raw
	}
	for name, data := range extra {
		b.Files[b.Dir+"/manifests/"+name] = data
	}
	b.Files[b.Dir+"/metadata/annotations.yaml"] = g.annotations()
	b.Files[dockerfile] = g.dockerfile()
	return b, nil
}

type generator struct {
	opts         Options
	version      semver.Version
	managerImage string
	agentImage   string
	bundle       *Bundle
}

func (g *generator) path(rel string) string { return filepath.Join(g.opts.Root, rel) }

func (g *generator) warnf(format string, args ...any) {
	g.bundle.Warnings = append(g.bundle.Warnings, fmt.Sprintf(format, args...))
}

type crdFile struct {
	file string
	raw  []byte
	crd  apiextensionsv1.CustomResourceDefinition
}

// readCRDs reads the controller-gen CRDs, sorted by file name.
func (g *generator) readCRDs() ([]crdFile, error) {
	paths, err := filepath.Glob(filepath.Join(g.path(crdDir), "*.yaml"))
	if err != nil {
		return nil, fmt.Errorf("list CRDs: %w", err)
	}
	if len(paths) == 0 {
		return nil, fmt.Errorf("no CRDs in %s: run make manifests", g.path(crdDir))
	}
	sort.Strings(paths)
	var out []crdFile
	for _, p := range paths {
		raw, err := os.ReadFile(p)
		if err != nil {
			return nil, fmt.Errorf("read CRD: %w", err)
		}
		var crd apiextensionsv1.CustomResourceDefinition
		if err := yaml.UnmarshalStrict(raw, &crd); err != nil {
			return nil, fmt.Errorf("parse CRD %s: %w", p, err)
		}
		if crd.Kind != "CustomResourceDefinition" || crd.Name == "" {
			return nil, fmt.Errorf("%s is not a named CustomResourceDefinition", p)
		}
		// One document per file: OLM's bundle loader decodes only the first,
		// so controller-gen's leading "---" would leave it empty.
		docs, err := readManifest(p)
		if err != nil {
			return nil, err
		}
		if len(docs) != 1 {
			return nil, fmt.Errorf("%s holds %d YAML documents, want one CRD", p, len(docs))
		}
		raw = bytes.TrimPrefix(raw, []byte("---\n"))
		out = append(out, crdFile{file: filepath.Base(p), raw: raw, crd: crd})
	}
	return out, nil
}

// readManifest decodes every document of a multi-document YAML file.
func readManifest(path string) ([][]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("open manifest: %w", err)
	}
	defer func() { _ = f.Close() }()
	r := utilyaml.NewYAMLReader(bufio.NewReader(f))
	var docs [][]byte
	for {
		doc, err := r.Read()
		if errors.Is(err, io.EOF) {
			return docs, nil
		}
		if err != nil {
			return nil, fmt.Errorf("read %s: %w", path, err)
		}
		if len(bytes.TrimSpace(stripComments(doc))) == 0 {
			continue
		}
		docs = append(docs, doc)
	}
}

// stripComments drops whole-line comments, to tell empty documents apart.
func stripComments(doc []byte) []byte {
	var out [][]byte
	for _, line := range bytes.Split(doc, []byte("\n")) {
		if t := bytes.TrimSpace(line); len(t) > 0 && t[0] != '#' {
			out = append(out, line)
		}
	}
	return bytes.Join(out, []byte("\n"))
}

func kindOf(doc []byte) (apiVersion, kind string, err error) {
	var tm struct {
		APIVersion string `json:"apiVersion"`
		Kind       string `json:"kind"`
	}
	if err := yaml.Unmarshal(doc, &tm); err != nil {
		return "", "", fmt.Errorf("parse object: %w", err)
	}
	return tm.APIVersion, tm.Kind, nil
}

// managerObjects returns the Deployment and the other objects of manager.yaml.
func (g *generator) managerObjects() (*appsv1.Deployment, [][]byte, error) {
	docs, err := readManifest(g.path(managerPath))
	if err != nil {
		return nil, nil, err
	}
	var dep *appsv1.Deployment
	var others [][]byte
	for _, doc := range docs {
		_, kind, err := kindOf(doc)
		if err != nil {
			return nil, nil, fmt.Errorf("%s: %w", managerPath, err)
		}
		switch kind {
		case "Deployment":
			if dep != nil {
				return nil, nil, fmt.Errorf("%s has more than one Deployment", managerPath)
			}
			dep = &appsv1.Deployment{}
			if err := yaml.UnmarshalStrict(doc, dep); err != nil {
				return nil, nil, fmt.Errorf("parse Deployment in %s: %w", managerPath, err)
			}
		default:
			others = append(others, doc)
		}
	}
	if dep == nil {
		return nil, nil, fmt.Errorf("no Deployment in %s", managerPath)
	}
	return dep, others, nil
}

// readManagerExtras returns the objects of manager.yaml that go into the
// bundle beside the CSV (the metrics Service). The Namespace is OLM's job.
func (g *generator) readManagerExtras() (map[string][]byte, error) {
	_, others, err := g.managerObjects()
	if err != nil {
		return nil, err
	}
	out := map[string][]byte{}
	for _, doc := range others {
		u := &unstructured.Unstructured{}
		if err := yaml.Unmarshal(doc, &u.Object); err != nil {
			return nil, fmt.Errorf("parse object in %s: %w", managerPath, err)
		}
		switch u.GetKind() {
		case "Namespace":
			continue
		case "Service", "ConfigMap", "PodDisruptionBudget", "ServiceMonitor", "PrometheusRule":
		default:
			return nil, fmt.Errorf("%s: %s %q has no place in a registry+v1 bundle", managerPath, u.GetKind(), u.GetName())
		}
		// OLM creates bundle objects in the namespace the operator is installed in.
		u.SetNamespace("")
		gv := strings.ReplaceAll(u.GetAPIVersion(), "/", "_")
		name := fmt.Sprintf("%s_%s_%s.yaml", u.GetName(), gv, strings.ToLower(u.GetKind()))
		data, err := yaml.Marshal(u.Object)
		if err != nil {
			return nil, fmt.Errorf("marshal %s %s: %w", u.GetKind(), u.GetName(), err)
		}
		out[name] = data
	}
	return out, nil
}

// csv merges the base CSV with what is generated.
func (g *generator) csv(crds []crdFile) (*operatorsv1alpha1.ClusterServiceVersion, error) {
	raw, err := os.ReadFile(g.path(baseCSVPath))
	if err != nil {
		return nil, fmt.Errorf("read base CSV: %w", err)
	}
	csv := &operatorsv1alpha1.ClusterServiceVersion{}
	if err := yaml.UnmarshalStrict(raw, csv); err != nil {
		return nil, fmt.Errorf("parse base CSV %s: %w", baseCSVPath, err)
	}
	csv.Name = fmt.Sprintf("%s.v%s", g.opts.Package, g.version)
	csv.Namespace = ""
	csv.Spec.Version = version.OperatorVersion{Version: g.version}
	if csv.Annotations == nil {
		csv.Annotations = map[string]string{}
	}
	csv.Annotations["containerImage"] = g.managerImage

	owned, err := g.ownedCRDs(csv.Spec.CustomResourceDefinitions.Owned, crds)
	if err != nil {
		return nil, err
	}
	csv.Spec.CustomResourceDefinitions.Owned = owned

	examples, err := g.almExamples(owned)
	if err != nil {
		return nil, err
	}
	csv.Annotations["alm-examples"] = examples

	strategy, err := g.installStrategy()
	if err != nil {
		return nil, err
	}
	csv.Spec.InstallStrategy = strategy

	csv.Spec.RelatedImages = []operatorsv1alpha1.RelatedImage{
		{Name: "stevedore-manager", Image: g.managerImage},
		{Name: "stevedore-agent", Image: g.agentImage},
	}
	if img := prometheusDefaultImage(crds); img != "" {
		csv.Spec.RelatedImages = append(csv.Spec.RelatedImages, operatorsv1alpha1.RelatedImage{Name: "prometheus", Image: img})
	}
	return csv, nil
}

// ownedCRDs lists every served version of every CRD, taking display names,
// descriptions, resources and descriptors from the base CSV.
func (g *generator) ownedCRDs(base []operatorsv1alpha1.CRDDescription, crds []crdFile) ([]operatorsv1alpha1.CRDDescription, error) {
	type key struct{ name, version string }
	byKey := map[key]operatorsv1alpha1.CRDDescription{}
	for _, d := range base {
		k := key{d.Name, d.Version}
		if _, dup := byKey[k]; dup {
			return nil, fmt.Errorf("base CSV lists owned CRD %s %s twice", d.Name, d.Version)
		}
		byKey[k] = d
	}
	var out []operatorsv1alpha1.CRDDescription
	for _, c := range crds {
		if c.crd.Spec.Group != apiGroup {
			return nil, fmt.Errorf("CRD %s is not in group %s", c.crd.Name, apiGroup)
		}
		for _, v := range c.crd.Spec.Versions {
			if !v.Served {
				continue
			}
			k := key{c.crd.Name, v.Name}
			d, ok := byKey[k]
			delete(byKey, k)
			if !ok {
				g.warnf("base CSV has no owned entry for %s %s: generated one without descriptors", c.crd.Name, v.Name)
				d = operatorsv1alpha1.CRDDescription{Name: c.crd.Name, Version: v.Name, DisplayName: c.crd.Spec.Names.Kind}
			}
			if d.Kind != "" && d.Kind != c.crd.Spec.Names.Kind {
				return nil, fmt.Errorf("base CSV: owned CRD %s has kind %s, the CRD says %s", d.Name, d.Kind, c.crd.Spec.Names.Kind)
			}
			d.Kind = c.crd.Spec.Names.Kind
			var schema *apiextensionsv1.JSONSchemaProps
			if v.Schema != nil {
				schema = v.Schema.OpenAPIV3Schema
			}
			if d.Description == "" && schema != nil {
				d.Description = firstSentence(schema.Description)
			}
			for _, sd := range d.SpecDescriptors {
				if err := checkPath(schema, "spec", sd.Path); err != nil {
					return nil, fmt.Errorf("base CSV: %s %s specDescriptor %q: %w", d.Kind, v.Name, sd.Path, err)
				}
			}
			for _, sd := range d.StatusDescriptors {
				if err := checkPath(schema, "status", sd.Path); err != nil {
					return nil, fmt.Errorf("base CSV: %s %s statusDescriptor %q: %w", d.Kind, v.Name, sd.Path, err)
				}
			}
			out = append(out, d)
		}
	}
	if len(byKey) > 0 {
		var left []string
		for k := range byKey {
			left = append(left, k.name+" "+k.version)
		}
		sort.Strings(left)
		return nil, fmt.Errorf("base CSV lists owned CRDs that %s does not serve: %s", crdDir, strings.Join(left, ", "))
	}
	return out, nil
}

// checkPath resolves a descriptor path (dotted field names; arrays are
// entered through their items) under the top-level field root.
func checkPath(schema *apiextensionsv1.JSONSchemaProps, root, path string) error {
	if schema == nil {
		return errors.New("the CRD version has no schema")
	}
	if path == "" {
		return errors.New("empty path")
	}
	cur, ok := schema.Properties[root]
	if !ok {
		return fmt.Errorf("the schema has no %s", root)
	}
	walked := root
	for _, seg := range strings.Split(path, ".") {
		for cur.Type == "array" && cur.Items != nil && cur.Items.Schema != nil {
			cur = *cur.Items.Schema
		}
		next, ok := cur.Properties[seg]
		if !ok {
			return fmt.Errorf("%s has no field %q", walked, seg)
		}
		walked += "." + seg
		cur = next
	}
	return nil
}

func firstSentence(s string) string {
	s = strings.Join(strings.Fields(s), " ")
	if i := strings.Index(s, ". "); i >= 0 {
		return s[:i+1]
	}
	return s
}

// almExamples collects the CRs of the API group in config/samples/*.yaml,
// in file and document order, without namespace or status.
func (g *generator) almExamples(owned []operatorsv1alpha1.CRDDescription) (string, error) {
	paths, err := filepath.Glob(filepath.Join(g.path(samplesDir), "*.yaml"))
	if err != nil {
		return "", fmt.Errorf("list samples: %w", err)
	}
	sort.Strings(paths)
	ownedKinds := map[string]bool{}
	for _, d := range owned {
		ownedKinds[d.Kind] = true
	}
	examples := []map[string]any{}
	seen := map[string]bool{}
	found := map[string]bool{}
	for _, p := range paths {
		docs, err := readManifest(p)
		if err != nil {
			return "", err
		}
		for _, doc := range docs {
			u := &unstructured.Unstructured{}
			if err := yaml.Unmarshal(doc, &u.Object); err != nil {
				return "", fmt.Errorf("parse sample in %s: %w", p, err)
			}
			if u.Object == nil || u.GroupVersionKind().Group != apiGroup {
				continue
			}
			if !ownedKinds[u.GetKind()] {
				return "", fmt.Errorf("sample %s %q in %s: kind is not an owned CRD", u.GetKind(), u.GetName(), p)
			}
			id := u.GetKind() + "/" + u.GetName()
			if seen[id] {
				// The samples share objects (e.g. one Bucket) across files.
				continue
			}
			seen[id] = true
			found[u.GetKind()] = true
			u.SetNamespace("")
			unstructured.RemoveNestedField(u.Object, "status")
			unstructured.RemoveNestedField(u.Object, "metadata", "creationTimestamp")
			examples = append(examples, u.Object)
		}
	}
	for _, d := range owned {
		if !found[d.Kind] {
			g.warnf("no sample of %s in %s/*.yaml: alm-examples has none", d.Kind, samplesDir)
		}
	}
	data, err := json.MarshalIndent(examples, "", "  ")
	if err != nil {
		return "", fmt.Errorf("marshal alm-examples: %w", err)
	}
	return string(data), nil
}

// installStrategy is the manager Deployment with pinned images and the
// OperatorGroup's target namespaces, and its RBAC.
func (g *generator) installStrategy() (operatorsv1alpha1.NamedInstallStrategy, error) {
	var none operatorsv1alpha1.NamedInstallStrategy
	dep, _, err := g.managerObjects()
	if err != nil {
		return none, err
	}
	spec := dep.Spec.DeepCopy()
	var c *corev1.Container
	for i := range spec.Template.Spec.Containers {
		if spec.Template.Spec.Containers[i].Name == managerName {
			c = &spec.Template.Spec.Containers[i]
		}
	}
	if c == nil {
		return none, fmt.Errorf("%s: the Deployment has no container %q", managerPath, managerName)
	}
	c.Image = g.managerImage
	var args []string
	for _, a := range c.Args {
		if strings.HasPrefix(a, "--agent-image") || strings.HasPrefix(a, "--watch-namespaces") {
			continue
		}
		args = append(args, a)
	}
	c.Args = append(args,
		"--agent-image="+g.agentImage,
		"--watch-namespaces=$("+watchNSEnv+")",
	)
	var env []corev1.EnvVar
	for _, e := range c.Env {
		if e.Name != watchNSEnv {
			env = append(env, e)
		}
	}
	c.Env = append(env, corev1.EnvVar{
		Name:      watchNSEnv,
		ValueFrom: &corev1.EnvVarSource{FieldRef: &corev1.ObjectFieldSelector{FieldPath: targetNSPath}},
	})
	sa := spec.Template.Spec.ServiceAccountName
	if sa == "" {
		return none, fmt.Errorf("%s: the Deployment sets no serviceAccountName", managerPath)
	}
	cluster, namespaced, err := g.permissions()
	if err != nil {
		return none, err
	}
	details := operatorsv1alpha1.StrategyDetailsDeployment{
		DeploymentSpecs: []operatorsv1alpha1.StrategyDeploymentSpec{{
			Name:  dep.Name,
			Spec:  *spec,
			Label: dep.Labels,
		}},
	}
	if len(cluster) > 0 {
		details.ClusterPermissions = []operatorsv1alpha1.StrategyDeploymentPermissions{{ServiceAccountName: sa, Rules: cluster}}
	}
	if len(namespaced) > 0 {
		details.Permissions = []operatorsv1alpha1.StrategyDeploymentPermissions{{ServiceAccountName: sa, Rules: namespaced}}
	}
	return operatorsv1alpha1.NamedInstallStrategy{StrategyName: operatorsv1alpha1.InstallStrategyNameDeployment, StrategySpec: details}, nil
}

// permissions splits the controller-gen RBAC: the ClusterRole becomes
// clusterPermissions, except the leader-election leases, which the manager
// only needs in its own namespace (permissions). Events are also granted
// there for leader election, and stay cluster-wide because the reconcilers
// record Events on the resources in every watched namespace. A Role in
// role.yaml (namespaced markers) becomes permissions.
func (g *generator) permissions() (cluster, namespaced []rbacv1.PolicyRule, err error) {
	docs, err := readManifest(g.path(rolePath))
	if err != nil {
		return nil, nil, err
	}
	seenClusterRole := false
	for _, doc := range docs {
		_, kind, err := kindOf(doc)
		if err != nil {
			return nil, nil, fmt.Errorf("%s: %w", rolePath, err)
		}
		switch kind {
		case "ClusterRole":
			var cr rbacv1.ClusterRole
			if err := yaml.UnmarshalStrict(doc, &cr); err != nil {
				return nil, nil, fmt.Errorf("parse ClusterRole in %s: %w", rolePath, err)
			}
			seenClusterRole = true
			for _, r := range cr.Rules {
				c, n, err := splitRule(r)
				if err != nil {
					return nil, nil, fmt.Errorf("%s: %w", rolePath, err)
				}
				if c != nil {
					cluster = append(cluster, *c)
				}
				namespaced = append(namespaced, n...)
			}
		case "Role":
			var role rbacv1.Role
			if err := yaml.UnmarshalStrict(doc, &role); err != nil {
				return nil, nil, fmt.Errorf("parse Role in %s: %w", rolePath, err)
			}
			namespaced = append(namespaced, role.Rules...)
		default:
			return nil, nil, fmt.Errorf("%s: unexpected %s", rolePath, kind)
		}
	}
	if !seenClusterRole {
		return nil, nil, fmt.Errorf("no ClusterRole in %s: run make manifests", rolePath)
	}
	return cluster, namespaced, nil
}

// splitRule returns what of r stays cluster-wide and what the manager
// needs in its own namespace.
func splitRule(r rbacv1.PolicyRule) (cluster *rbacv1.PolicyRule, namespaced []rbacv1.PolicyRule, err error) {
	if slices.Contains(r.APIGroups, "coordination.k8s.io") && slices.Contains(r.Resources, "leases") {
		if len(r.APIGroups) != 1 {
			return nil, nil, fmt.Errorf("rule for leases also covers API groups %q: give leader election its own marker", r.APIGroups)
		}
		leases := r.DeepCopy()
		leases.Resources = []string{"leases"}
		namespaced = append(namespaced, *leases)
		rest := slices.DeleteFunc(slices.Clone(r.Resources), func(s string) bool { return s == "leases" })
		if len(rest) == 0 {
			return nil, namespaced, nil
		}
		c := r.DeepCopy()
		c.Resources = rest
		return c, namespaced, nil
	}
	c := r.DeepCopy()
	if slices.Contains(r.Resources, "events") && len(r.ResourceNames) == 0 {
		var verbs []string
		for _, v := range r.Verbs {
			if v == "create" || v == "patch" {
				verbs = append(verbs, v)
			}
		}
		if len(verbs) > 0 {
			namespaced = append(namespaced, rbacv1.PolicyRule{APIGroups: slices.Clone(r.APIGroups), Resources: []string{"events"}, Verbs: verbs})
		}
	}
	return c, namespaced, nil
}

// prometheusDefaultImage is the Prometheus image the operator runs when a
// PrometheusShipper does not name one (the CRD default).
func prometheusDefaultImage(crds []crdFile) string {
	for _, c := range crds {
		if c.crd.Spec.Names.Kind != "PrometheusShipper" {
			continue
		}
		for _, v := range c.crd.Spec.Versions {
			if v.Schema == nil || v.Schema.OpenAPIV3Schema == nil {
				continue
			}
			img := v.Schema.OpenAPIV3Schema.Properties["spec"].Properties["prometheus"].Properties["image"]
			if img.Default != nil {
				var s string
				if json.Unmarshal(img.Default.Raw, &s) == nil {
					return s
				}
			}
		}
	}
	return ""
}

// marshalCSV writes the CSV as YAML without the fields a typed object always
// carries but a manifest should not (status, null timestamps, empty
// defaults).
func marshalCSV(csv *operatorsv1alpha1.ClusterServiceVersion) ([]byte, error) {
	data, err := json.Marshal(csv)
	if err != nil {
		return nil, fmt.Errorf("marshal CSV: %w", err)
	}
	var obj map[string]any
	if err := json.Unmarshal(data, &obj); err != nil {
		return nil, fmt.Errorf("re-read CSV: %w", err)
	}
	delete(obj, "status")
	dropNullTimestamps(obj)
	if spec, ok := obj["spec"].(map[string]any); ok {
		if c, ok := spec["cleanup"].(map[string]any); ok && c["enabled"] == false {
			delete(spec, "cleanup")
		}
		if a, ok := spec["apiservicedefinitions"].(map[string]any); ok && len(a) == 0 {
			delete(spec, "apiservicedefinitions")
		}
	}
	out, err := yaml.Marshal(obj)
	if err != nil {
		return nil, fmt.Errorf("marshal CSV YAML: %w", err)
	}
	return out, nil
}

func dropNullTimestamps(v any) {
	switch t := v.(type) {
	case map[string]any:
		if ts, ok := t["creationTimestamp"]; ok && ts == nil {
			delete(t, "creationTimestamp")
		}
		for _, x := range t {
			dropNullTimestamps(x)
		}
	case []any:
		for _, x := range t {
			dropNullTimestamps(x)
		}
	}
}

// bundleLabels are the operator-framework bundle annotations, in the order
// operator-sdk writes them.
func (g *generator) bundleLabels() [][2]string {
	return [][2]string{
		{"operators.operatorframework.io.bundle.mediatype.v1", mediaType},
		{"operators.operatorframework.io.bundle.manifests.v1", "manifests/"},
		{"operators.operatorframework.io.bundle.metadata.v1", "metadata/"},
		{"operators.operatorframework.io.bundle.package.v1", g.opts.Package},
		{"operators.operatorframework.io.bundle.channels.v1", strings.Join(splitList(g.opts.Channels), ",")},
		{"operators.operatorframework.io.bundle.channel.default.v1", g.opts.DefaultChannel},
	}
}

func (g *generator) annotations() []byte {
	var b strings.Builder
	b.WriteString("# Generated by make bundle (hack/bundle); do not edit.\nannotations:\n")
	for _, l := range g.bundleLabels() {
		fmt.Fprintf(&b, "  %s: %s\n", l[0], l[1])
	}
	return []byte(b.String())
}

func (g *generator) dockerfile() []byte {
	var b strings.Builder
	b.WriteString("# Generated by make bundle (hack/bundle); do not edit.\n")
	fmt.Fprintf(&b, "# docker build -f %s -t <registry>/stevedore-bundle:v<version> .\n", dockerfile)
	b.WriteString("FROM scratch\n\n# Core bundle labels.\n")
	for _, l := range g.bundleLabels() {
		fmt.Fprintf(&b, "LABEL %s=%s\n", l[0], l[1])
	}
	b.WriteString("\n# Copy files to locations specified by labels.\n")
	fmt.Fprintf(&b, "COPY %s/manifests /manifests/\n", g.bundle.Dir)
	fmt.Fprintf(&b, "COPY %s/metadata /metadata/\n", g.bundle.Dir)
	return []byte(b.String())
}

func splitList(s string) []string {
	var out []string
	for _, p := range strings.Split(s, ",") {
		if p = strings.TrimSpace(p); p != "" {
			out = append(out, p)
		}
	}
	return out
}

// Write replaces out/manifests and out/metadata with the bundle and writes
// bundle.Dockerfile into the parent of out. Other files in out (a README)
// stay.
func (b *Bundle) Write(out string) error {
	if base := filepath.Base(filepath.Clean(out)); base != b.Dir {
		return fmt.Errorf("bundle was generated for directory %q, not %q", b.Dir, base)
	}
	parent := filepath.Dir(filepath.Clean(out))
	for _, sub := range []string{"manifests", "metadata"} {
		if err := os.RemoveAll(filepath.Join(out, sub)); err != nil {
			return fmt.Errorf("clear %s: %w", sub, err)
		}
	}
	names := make([]string, 0, len(b.Files))
	for name := range b.Files {
		names = append(names, name)
	}
	sort.Strings(names)
	for _, name := range names {
		p := filepath.Join(parent, filepath.FromSlash(name))
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			return fmt.Errorf("create directory: %w", err)
		}
		if err := writeFileAtomic(p, b.Files[name]); err != nil {
			return err
		}
	}
	return nil
}

func writeFileAtomic(path string, data []byte) error {
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".tmp*")
	if err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	defer func() { _ = os.Remove(tmp.Name()) }()
	if _, err := tmp.Write(data); err != nil {
		_ = tmp.Close()
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := tmp.Chmod(0o644); err != nil {
		_ = tmp.Close()
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	return nil
}
