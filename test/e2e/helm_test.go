package e2e

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"time"

	"github.com/google/go-cmp/cmp"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/yaml"

	monitoringv1alpha1 "github.com/stevedore-dev/stevedore/api/v1alpha1"
)

const (
	// The operator is installed the way users install it: a Helm release.
	helmRelease   = "stevedore"
	helmNamespace = "stevedore-system"
	chartDir      = "../../charts/stevedore"
)

var managerPods = client.MatchingLabels{"app.kubernetes.io/instance": helmRelease, "app.kubernetes.io/component": "manager"}

// helm runs the Helm binary hack/testbin.sh built against the cluster.
func (s *suite) helm(args ...string) string {
	s.t.Helper()
	bin := os.Getenv("STEVEDORE_HELM")
	if bin == "" {
		s.t.Fatal("STEVEDORE_HELM is not set (hack/demo.sh install writes it to bin/e2e.env)")
	}
	ctx, cancel := context.WithTimeout(s.ctx, 5*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, args...)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	start := time.Now()
	if err := cmd.Run(); err != nil {
		s.t.Fatalf("helm %s: %v\n%s", strings.Join(args, " "), err, out.String())
	}
	s.t.Logf("helm %s (%s)", args[0], time.Since(start).Round(time.Second))
	return out.String()
}

// imageValues splits an image reference into the chart's
// registry/repository/tag values under prefix (image or agentImage).
func (s *suite) imageValues(prefix, ref string) []string {
	s.t.Helper()
	m := regexp.MustCompile(`^(.+)/([^/:]+):([^/:]+)$`).FindStringSubmatch(ref)
	if m == nil {
		s.t.Fatalf("image %q is not REGISTRY/REPOSITORY:TAG", ref)
	}
	return []string{
		"--set", prefix + ".registry=" + m[1],
		"--set", prefix + ".repository=" + m[2],
		"--set-string", prefix + ".tag=" + m[3],
	}
}

func (s *suite) helmImageValues() []string {
	manager := os.Getenv("STEVEDORE_E2E_MANAGER_IMAGE")
	if manager == "" {
		s.t.Fatal("STEVEDORE_E2E_MANAGER_IMAGE is not set (hack/demo.sh install writes it to bin/e2e.env)")
	}
	// Built locally and imported into the node: never pulled. (The agent's
	// pull policy is each resource's spec.agent.imagePullPolicy.)
	vals := append(s.imageValues("image", manager), "--set", "image.pullPolicy=IfNotPresent")
	return append(vals, s.imageValues("agentImage", s.images["AGENT"])...)
}

// helmInstall installs the operator from charts/stevedore and waits until
// the manager is ready. A release left by an earlier run (KEEP=1) is
// removed first, so the install is always a fresh one.
func (s *suite) helmInstall() {
	if strings.Contains(s.helm("list", "-n", helmNamespace, "-q"), helmRelease) {
		s.helm("uninstall", helmRelease, "-n", helmNamespace, "--wait")
	}
	args := append([]string{"install", helmRelease, chartDir, "-n", helmNamespace, "--create-namespace", "--wait", "--timeout", "3m"}, s.helmImageValues()...)
	out := s.helm(args...)
	if !strings.Contains(out, "STATUS: deployed") {
		s.t.Fatalf("helm install did not deploy:\n%s", out)
	}
	// NOTES.txt tells the user what to apply next.
	if !strings.Contains(out, "kubectl get storegateways") {
		s.t.Errorf("helm install's notes do not say what to run next:\n%s", out)
	}
	pods := s.managerPods()
	if len(pods) != 1 || !podReady(&pods[0]) {
		s.t.Fatalf("%d manager pod(s) after helm install --wait, want 1 ready", len(pods))
	}
	s.t.Logf("manager %s running %s", pods[0].Name, pods[0].Spec.Containers[0].Image)
}

func (s *suite) managerPods() []corev1.Pod {
	s.t.Helper()
	var pods corev1.PodList
	if err := s.c.List(s.ctx, &pods, client.InNamespace(helmNamespace), managerPods); err != nil {
		s.t.Fatal(err)
	}
	var live []corev1.Pod
	for _, p := range pods.Items {
		if p.DeletionTimestamp == nil {
			live = append(live, p)
		}
	}
	return live
}

// crSnapshot is what "CRs untouched" means: same objects, same generation,
// same spec.
type crSnapshot struct {
	UID        types.UID
	Generation int64
	Spec       any
}

func (s *suite) snapshotCRs() map[string]crSnapshot {
	s.t.Helper()
	out := map[string]crSnapshot{}
	for _, obj := range []client.Object{
		&monitoringv1alpha1.Bucket{}, &monitoringv1alpha1.PrometheusShipper{}, &monitoringv1alpha1.StoreGateway{},
	} {
		name := map[string]string{"*v1alpha1.Bucket": "metrics", "*v1alpha1.PrometheusShipper": "prometheus", "*v1alpha1.StoreGateway": "store"}[fmt.Sprintf("%T", obj)]
		if err := s.c.Get(s.ctx, client.ObjectKey{Namespace: s.ns, Name: name}, obj); err != nil {
			s.t.Fatalf("get %T %s: %v", obj, name, err)
		}
		var spec any
		switch o := obj.(type) {
		case *monitoringv1alpha1.Bucket:
			spec = o.Spec
		case *monitoringv1alpha1.PrometheusShipper:
			spec = o.Spec
		case *monitoringv1alpha1.StoreGateway:
			spec = o.Spec
		}
		out[fmt.Sprintf("%T/%s", obj, name)] = crSnapshot{UID: obj.GetUID(), Generation: obj.GetGeneration(), Spec: spec}
	}
	return out
}

// bumpedChart copies the chart to a temporary directory with its patch
// version raised, as a new chart release would arrive.
func (s *suite) bumpedChart() (dir, version string) {
	s.t.Helper()
	dir = filepath.Join(s.t.TempDir(), "stevedore")
	if err := os.CopyFS(dir, os.DirFS(chartDir)); err != nil {
		s.t.Fatal(err)
	}
	path := filepath.Join(dir, "Chart.yaml")
	raw, err := os.ReadFile(path)
	if err != nil {
		s.t.Fatal(err)
	}
	var chart struct {
		Version string `json:"version"`
	}
	if err := yaml.Unmarshal(raw, &chart); err != nil {
		s.t.Fatal(err)
	}
	var major, minor, patch int
	if _, err := fmt.Sscanf(chart.Version, "%d.%d.%d", &major, &minor, &patch); err != nil {
		s.t.Fatalf("chart version %q: %v", chart.Version, err)
	}
	version = fmt.Sprintf("%d.%d.%d", major, minor, patch+1)
	raw = regexp.MustCompile(`(?m)^version:.*$`).ReplaceAll(raw, []byte("version: "+version))
	if err := os.WriteFile(path, raw, 0o644); err != nil {
		s.t.Fatal(err)
	}
	return dir, version
}

// helmUpgraded: `helm upgrade` to a newer chart version with resources in
// place rolls the manager, leaves every resource as the user wrote it, loses
// no block, and the new manager carries on writing status.
func (s *suite) helmUpgraded() {
	beforeCRs := s.snapshotCRs()
	beforeBlocks, err := s.bucketBlocks()
	if err != nil {
		s.t.Fatal(err)
	}
	oldPods := s.managerPods()
	uploaded := s.shipper().Status.Uploaded

	dir, version := s.bumpedChart()
	// The documented upgrade: CRDs first (Helm never upgrades crds/), then the release.
	crds := s.helm("show", "crds", dir)
	apply := exec.CommandContext(s.ctx, filepath.Join(os.Getenv("STEVEDORE_KUBE_BIN"), "kubectl"), "apply", "--server-side", "--force-conflicts", "-f", "-")
	apply.Stdin = strings.NewReader(crds)
	if out, err := apply.CombinedOutput(); err != nil {
		s.t.Fatalf("kubectl apply --server-side the upgraded chart's CRDs: %v\n%s", err, out)
	}
	args := append([]string{"upgrade", helmRelease, dir, "-n", helmNamespace, "--wait", "--timeout", "3m"}, s.helmImageValues()...)
	out := s.helm(args...)
	if !strings.Contains(out, "STATUS: deployed") {
		s.t.Fatalf("helm upgrade did not deploy:\n%s", out)
	}
	if hist := s.helm("history", helmRelease, "-n", helmNamespace); !strings.Contains(hist, "stevedore-"+version) {
		s.t.Errorf("helm history has no stevedore-%s revision:\n%s", version, hist)
	}
	s.eventually("the manager rolled to the upgraded chart", 3*time.Minute, func() error {
		pods := s.managerPods()
		if len(pods) != 1 || !podReady(&pods[0]) {
			return fmt.Errorf("%d manager pod(s), want 1 ready", len(pods))
		}
		for _, old := range oldPods {
			if pods[0].UID == old.UID {
				return fmt.Errorf("manager pod %s is still the one from before the upgrade", old.Name)
			}
		}
		var d appsv1.Deployment
		if err := s.c.Get(s.ctx, client.ObjectKey{Namespace: helmNamespace, Name: "stevedore-manager"}, &d); err != nil {
			return err
		}
		if got := d.Labels["helm.sh/chart"]; got != "stevedore-"+version {
			return fmt.Errorf("manager Deployment labelled helm.sh/chart=%s, want stevedore-%s", got, version)
		}
		return nil
	})
	if diff := cmp.Diff(beforeCRs, s.snapshotCRs()); diff != "" {
		s.t.Errorf("resources changed by helm upgrade (-before +after):\n%s", diff)
	}
	// The new manager writes status again: a block cut after the upgrade
	// shows up in the shipper's status.
	s.eventually("the upgraded manager reports a newly shipped block", 5*time.Minute, func() error {
		if got := s.shipper().Status.Uploaded; got <= uploaded {
			return fmt.Errorf("status.uploaded %d, was %d before the upgrade", got, uploaded)
		}
		return nil
	})
	afterBlocks, err := s.bucketBlocks()
	if err != nil {
		s.t.Fatal(err)
	}
	for id := range beforeBlocks {
		if _, ok := afterBlocks[id]; !ok {
			s.t.Errorf("block %s was in the bucket before the upgrade and is gone", id)
		}
	}
	s.storeServesBucket(3)
}

// helmUninstalled: `helm uninstall` removes the operator and nothing of the
// user's: the CRDs (Helm never deletes crds/), the resources and the
// workloads they run stay.
func (s *suite) helmUninstalled() {
	beforeCRs := s.snapshotCRs()
	s.helm("uninstall", helmRelease, "-n", helmNamespace, "--wait", "--timeout", "3m")

	s.eventually("the operator removed", 2*time.Minute, func() error {
		if pods := s.managerPods(); len(pods) > 0 {
			return fmt.Errorf("%d manager pod(s) left", len(pods))
		}
		var deps appsv1.DeploymentList
		if err := s.c.List(s.ctx, &deps, client.InNamespace(helmNamespace), client.MatchingLabels{"app.kubernetes.io/instance": helmRelease}); err != nil {
			return err
		}
		var roles rbacv1.ClusterRoleList
		if err := s.c.List(s.ctx, &roles, client.MatchingLabels{"app.kubernetes.io/instance": helmRelease}); err != nil {
			return err
		}
		var sas corev1.ServiceAccountList
		if err := s.c.List(s.ctx, &sas, client.InNamespace(helmNamespace), client.MatchingLabels{"app.kubernetes.io/instance": helmRelease}); err != nil {
			return err
		}
		if n := len(deps.Items) + len(roles.Items) + len(sas.Items); n > 0 {
			return fmt.Errorf("%d Deployment(s), %d ClusterRole(s), %d ServiceAccount(s) of the release left", len(deps.Items), len(roles.Items), len(sas.Items))
		}
		return nil
	})
	for _, name := range []string{"buckets", "prometheusshippers", "storegateways"} {
		var crd apiextensionsv1.CustomResourceDefinition
		if err := s.c.Get(s.ctx, client.ObjectKey{Name: name + ".monitoring.stevedore.dev"}, &crd); err != nil {
			s.t.Errorf("CRD %s after helm uninstall: %v", name, err)
		}
	}
	if diff := cmp.Diff(beforeCRs, s.snapshotCRs()); diff != "" {
		s.t.Errorf("resources changed by helm uninstall (-before +after):\n%s", diff)
	}
	// Nothing deletes the workloads: the store gateways keep serving.
	var sts appsv1.StatefulSetList
	if err := s.c.List(s.ctx, &sts, client.InNamespace(s.ns)); err != nil {
		s.t.Fatal(err)
	}
	if len(sts.Items) == 0 {
		s.t.Error("no StatefulSets left in the demo namespace after helm uninstall")
	}
	if err := s.checkStoreServesBucket(3); err != nil {
		s.t.Errorf("store gateways after helm uninstall: %v", err)
	}
}
