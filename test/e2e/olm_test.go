package e2e

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	monitoringv1alpha1 "github.com/stevedore-dev/stevedore/api/v1alpha1"
)

// Where hack/demo/olm/stevedore.yaml installs the bundle: the operator in
// olmNamespace, watching only olmTargetNamespace (SingleNamespace).
const (
	olmNamespace       = "stevedore-olm"
	olmTargetNamespace = "stevedore-olm-target"
	olmCSV             = "stevedore.v0.1.0"
	olmManager         = "stevedore-manager"
)

// stevedoreCRDs are the CRDs of the bundle.
var stevedoreCRDs = []string{
	"buckets.monitoring.stevedore.dev",
	"prometheusshippers.monitoring.stevedore.dev",
	"storegateways.monitoring.stevedore.dev",
}

// TestInstallFromOLMBundle installs OLM v0.28.0 on the cluster, then
// Stevedore the way OLM users do: a CatalogSource (a file-based catalog
// served by opm, with the bundle image of bundle/ by digest), an
// OperatorGroup and a Subscription to package stevedore, channel alpha. OLM
// resolves it, unpacks the bundle image with a Job, and installs the CSV;
// the manager it deploys reconciles a Bucket in the OperatorGroup's target
// namespace and leaves one outside it alone. It removes everything it
// created afterwards, OLM included; CRDs that existed before (TestEndToEnd's
// helm install leaves them) stay.
func TestInstallFromOLMBundle(t *testing.T) {
	s := newSuite(t)
	env := map[string]string{}
	var missing []string
	for _, k := range []string{"STEVEDORE_E2E_OLM_IMAGE", "STEVEDORE_E2E_OPM_IMAGE", "STEVEDORE_E2E_OLM_CATALOG_IMAGE", "STEVEDORE_OLM_CRDS"} {
		env[k] = os.Getenv(k)
		if env[k] == "" {
			missing = append(missing, k)
		}
	}
	switch {
	case len(missing) == len(env):
		t.Skip("no OLM images: hack/demo.sh install was run with OLM_IMAGES=0")
	case len(missing) > 0:
		t.Fatalf("%s not set (hack/demo.sh install writes them to bin/e2e.env, from hack/demo/olm/images.sh)", strings.Join(missing, ", "))
	}
	if !strings.Contains(env["STEVEDORE_E2E_OLM_CATALOG_IMAGE"], "@sha256:") {
		t.Fatalf("STEVEDORE_E2E_OLM_CATALOG_IMAGE=%s: want the catalog image by digest (OLM pulls tags with imagePullPolicy Always)", env["STEVEDORE_E2E_OLM_CATALOG_IMAGE"])
	}
	s.noOtherManager()
	existing := map[string]bool{}
	for _, name := range stevedoreCRDs {
		err := s.c.Get(s.ctx, client.ObjectKey{Name: name}, &apiextensionsv1.CustomResourceDefinition{})
		switch {
		case err == nil:
			existing[name] = true
		case !apierrors.IsNotFound(err):
			t.Fatalf("CRD %s: %v", name, err)
		}
	}
	t.Cleanup(func() { s.uninstallOLM(env["STEVEDORE_OLM_CRDS"], existing) })

	// OLM itself.
	s.kubectl("", "apply", "--server-side", "-f", env["STEVEDORE_OLM_CRDS"])
	s.kubectl("", "wait", "--for=condition=Established", "--timeout=2m", "-f", env["STEVEDORE_OLM_CRDS"])
	s.kubectl(s.manifest("olm.yaml", map[string]string{
		"OLM_IMAGE": env["STEVEDORE_E2E_OLM_IMAGE"], "OPM_IMAGE": env["STEVEDORE_E2E_OPM_IMAGE"],
	}), "apply", "--server-side", "-f", "-")
	for _, d := range []string{"olm-operator", "catalog-operator"} {
		s.kubectl("", "-n", "olm", "rollout", "status", "deployment/"+d, "--timeout=3m")
	}

	// Stevedore through OLM.
	s.kubectl(s.manifest("stevedore.yaml", map[string]string{"CATALOG_IMAGE": env["STEVEDORE_E2E_OLM_CATALOG_IMAGE"]}),
		"apply", "--server-side", "-f", "-")
	s.eventually("the CatalogSource's opm serves the catalog", 4*time.Minute, func() error {
		state := s.kubectlGet("-n", "olm", "catalogsource/stevedore-catalog", "-o", "jsonpath={.status.connectionState.lastObservedState}")
		if state != "READY" {
			return fmt.Errorf("connection state %q; catalog pods: %s", state,
				s.kubectlGet("-n", "olm", "get", "pods", "-l", "olm.catalogSource=stevedore-catalog", "-o", "jsonpath={range .items[*]}{.metadata.name} {.status.phase} {.status.containerStatuses[*].state}{\"\\n\"}{end}"))
		}
		return nil
	})
	s.eventually("the Subscription resolves to "+olmCSV+" and its CSV succeeds", 6*time.Minute, func() error {
		installed := s.kubectlGet("-n", olmNamespace, "subscription/stevedore", "-o", "jsonpath={.status.installedCSV}")
		if installed != olmCSV {
			return fmt.Errorf("installedCSV %q; subscription conditions: %s", installed,
				s.kubectlGet("-n", olmNamespace, "subscription/stevedore", "-o", "jsonpath={range .status.conditions[*]}{.type}={.status} {.reason}: {.message}; {end}"))
		}
		phase := s.kubectlGet("-n", olmNamespace, "csv/"+olmCSV, "-o", "jsonpath={.status.phase} {.status.reason}: {.status.message}")
		if !strings.HasPrefix(phase, "Succeeded ") {
			return fmt.Errorf("CSV phase %s", phase)
		}
		return nil
	})
	// The bundle came from its image: OLM's unpack Job ran (by digest, so
	// with IfNotPresent) and the InstallPlan names the bundle image.
	bundleImages := s.kubectlGet("-n", olmNamespace, "get", "installplans", "-o", "jsonpath={.items[*].status.bundleLookups[*].path}")
	if !strings.Contains(bundleImages, "/stevedore-bundle@sha256:") {
		t.Errorf("InstallPlan bundle lookups %q: want the bundle image by digest", bundleImages)
	}

	var dep appsv1.Deployment
	s.eventually("the CSV's manager Deployment is ready", 3*time.Minute, func() error {
		if err := s.c.Get(s.ctx, client.ObjectKey{Namespace: olmNamespace, Name: olmManager}, &dep); err != nil {
			return err
		}
		if dep.Status.ObservedGeneration != dep.Generation || dep.Status.ReadyReplicas < 1 || dep.Status.UpdatedReplicas != dep.Status.Replicas {
			return fmt.Errorf("ready %d, updated %d of %d (generation %d, observed %d)", dep.Status.ReadyReplicas,
				dep.Status.UpdatedReplicas, dep.Status.Replicas, dep.Generation, dep.Status.ObservedGeneration)
		}
		return nil
	})
	if got := dep.Spec.Template.Annotations["olm.targetNamespaces"]; got != olmTargetNamespace {
		t.Errorf("manager pod template olm.targetNamespaces = %q, want %q (the OperatorGroup's)", got, olmTargetNamespace)
	}
	if owner := dep.Labels["olm.owner"]; owner != olmCSV {
		t.Errorf("manager Deployment olm.owner = %q, want %s", owner, olmCSV)
	}

	// The manager reconciles a Bucket in its target namespace, and not one
	// outside it (applied first, so a manager watching it would have seen it
	// by the time the other one is reconciled).
	outside := s.filesystemBucket(olmNamespace, "outside")
	watched := s.filesystemBucket(olmTargetNamespace, "watched")
	var b monitoringv1alpha1.Bucket
	s.eventually("the manager from the bundle reconciles the Bucket in its target namespace", 2*time.Minute, func() error {
		if err := s.c.Get(s.ctx, client.ObjectKeyFromObject(watched), &b); err != nil {
			return err
		}
		if b.Status.ObservedGeneration != b.Generation || conditionStatus(b.Status.Conditions, "Ready") != "True" {
			return fmt.Errorf("observedGeneration %d of %d, conditions %+v", b.Status.ObservedGeneration, b.Generation, b.Status.Conditions)
		}
		return nil
	})
	if got := conditionStatus(b.Status.Conditions, "Reachable"); got != "Unknown" {
		t.Errorf("filesystem Bucket Reachable = %s, want Unknown (the operator does not probe pod-local buckets)", got)
	}
	var sec corev1.Secret
	if err := s.c.Get(s.ctx, client.ObjectKey{Namespace: olmTargetNamespace, Name: b.Status.ConfigSecretName}, &sec); err != nil {
		t.Errorf("objstore config Secret %q of the Bucket: %v", b.Status.ConfigSecretName, err)
	} else if !slices.ContainsFunc(sec.OwnerReferences, func(o metav1.OwnerReference) bool { return o.UID == b.UID }) {
		t.Errorf("Secret %s is not owned by the Bucket: %+v", sec.Name, sec.OwnerReferences)
	}
	if err := s.c.Get(s.ctx, client.ObjectKeyFromObject(outside), outside); err != nil {
		t.Fatal(err)
	}
	if len(outside.Status.Conditions) > 0 || outside.Status.ObservedGeneration != 0 {
		t.Errorf("Bucket %s/%s outside the OperatorGroup's target namespaces was reconciled: %+v", olmNamespace, outside.Name, outside.Status)
	}
}

// noOtherManager fails unless no Stevedore manager runs: one would reconcile
// the test's Buckets too (TestEndToEnd ends with helm uninstall).
func (s *suite) noOtherManager() {
	s.t.Helper()
	var pods corev1.PodList
	if err := s.c.List(s.ctx, &pods, client.MatchingLabels{"app.kubernetes.io/name": "stevedore", "app.kubernetes.io/component": "manager"}); err != nil {
		s.t.Fatal(err)
	}
	for _, p := range pods.Items {
		if p.DeletionTimestamp == nil {
			s.t.Fatalf("a Stevedore manager already runs (pod %s/%s): uninstall it first, it would reconcile this test's Buckets", p.Namespace, p.Name)
		}
	}
}

func (s *suite) filesystemBucket(ns, name string) *monitoringv1alpha1.Bucket {
	s.t.Helper()
	b := &monitoringv1alpha1.Bucket{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
		Spec: monitoringv1alpha1.BucketSpec{
			Type:       monitoringv1alpha1.BucketFilesystem,
			Filesystem: &monitoringv1alpha1.FilesystemBucket{Directory: "/var/lib/stevedore/blocks"},
		},
	}
	if err := s.c.Create(s.ctx, b, client.FieldOwner(fieldOwner)); err != nil {
		s.t.Fatalf("create Bucket %s/%s: %v", ns, name, err)
	}
	return b
}

// manifest reads hack/demo/olm/NAME with ${VAR} filled in from vars; every
// ${...} must be given.
func (s *suite) manifest(name string, vars map[string]string) string {
	s.t.Helper()
	raw, err := os.ReadFile(filepath.Join("..", "..", "hack", "demo", "olm", name))
	if err != nil {
		s.t.Fatal(err)
	}
	out := string(raw)
	for k, v := range vars {
		out = strings.ReplaceAll(out, "${"+k+"}", v)
	}
	if i := strings.Index(out, "${"); i >= 0 {
		s.t.Fatalf("hack/demo/olm/%s: no value for %s", name, out[i:i+strings.IndexByte(out[i:], '}')+1])
	}
	return out
}

// kubectl runs the cluster's kubectl with stdin and fails the test on error.
func (s *suite) kubectl(stdin string, args ...string) string {
	s.t.Helper()
	out, err := s.runKubectlErr(s.ctx, stdin, args...)
	if err != nil {
		s.t.Fatal(err)
	}
	return out
}

// kubectlGet runs `kubectl get ARGS` (or ARGS when they start with get),
// returning the output, or the error text, for messages and polling.
func (s *suite) kubectlGet(args ...string) string {
	if !slices.Contains(args, "get") {
		args = append([]string{"get"}, args...)
	}
	out, err := s.runKubectlErr(s.ctx, "", args...)
	if err != nil {
		return err.Error()
	}
	return strings.TrimSpace(out)
}

func (s *suite) runKubectlErr(ctx context.Context, stdin string, args ...string) (string, error) {
	bin := "kubectl"
	if d := os.Getenv("STEVEDORE_KUBE_BIN"); d != "" {
		bin = filepath.Join(d, "kubectl")
	}
	ctx, cancel := context.WithTimeout(ctx, 4*time.Minute)
	defer cancel()
	var out, errOut bytes.Buffer
	cmd := exec.CommandContext(ctx, bin, args...)
	cmd.Stdin = strings.NewReader(stdin)
	cmd.Stdout, cmd.Stderr = &out, &errOut
	if err := cmd.Run(); err != nil {
		return out.String(), fmt.Errorf("kubectl %s: %w\n%s", strings.Join(args, " "), err, errOut.String())
	}
	return out.String(), nil
}

// uninstallOLM removes what the test created: the operator (Subscription,
// CSV and what OLM made for them), its namespaces, the catalog, OLM and its
// CRDs, and the Stevedore CRDs unless they existed before. Errors are
// reported, not fatal, so that every step runs.
func (s *suite) uninstallOLM(olmCRDs string, existingCRDs map[string]bool) {
	ctx, cancel := context.WithTimeout(context.Background(), 8*time.Minute)
	defer cancel()
	var errs []error
	run := func(args ...string) {
		if _, err := s.runKubectlErr(ctx, "", args...); err != nil {
			errs = append(errs, err)
		}
	}
	// Without its Subscription OLM does not reinstall the CSV; deleting the
	// CSV deletes its Deployment, ServiceAccount and (namespaced) RBAC.
	run("-n", olmNamespace, "delete", "--ignore-not-found", "--wait", "--timeout=2m", "subscriptions.operators.coreos.com/stevedore")
	run("-n", olmNamespace, "delete", "--ignore-not-found", "--wait", "--timeout=2m", "clusterserviceversions.operators.coreos.com", "--all")
	run("-n", olmNamespace, "delete", "--ignore-not-found", "--wait", "--timeout=2m", "installplans.operators.coreos.com,operatorgroups.operators.coreos.com", "--all")
	run("delete", "--ignore-not-found", "--wait", "--timeout=3m", "namespace/"+olmNamespace, "namespace/"+olmTargetNamespace)
	run("-n", "olm", "delete", "--ignore-not-found", "--wait", "--timeout=2m", "catalogsources.operators.coreos.com/stevedore-catalog")
	// OLM itself, then what it made at cluster scope (labelled olm.owner:
	// the CSV's ClusterRoles and bindings, the OperatorGroup's aggregated
	// roles) and its CRDs.
	run("delete", "--ignore-not-found", "--wait", "--timeout=3m", "namespace/olm", "namespace/operators",
		"clusterrolebinding/olm-operator-binding-olm", "clusterrole/system:controller:operator-lifecycle-manager")
	run("delete", "--ignore-not-found", "clusterroles,clusterrolebindings", "-l", "olm.owner")
	run("delete", "--ignore-not-found", "--wait", "--timeout=2m", "-f", olmCRDs)
	for _, name := range stevedoreCRDs {
		if !existingCRDs[name] {
			run("delete", "--ignore-not-found", "--wait", "--timeout=2m", "crd/"+name)
		}
	}
	if err := errors.Join(errs...); err != nil {
		s.t.Errorf("cleaning up after the OLM install: %v", err)
	}
}
