package e2e

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"sigs.k8s.io/controller-runtime/pkg/client"

	monitoringv1alpha1 "github.com/stevedore-dev/stevedore/api/v1alpha1"
)

// samplesDir is applied as users apply it: every file, unchanged.
const samplesDir = "../../config/samples/"

// samplesReachReady applies config/samples/ unchanged (kubectl apply -f
// config/samples/, namespace default) on the real cluster: the dev MinIO on a
// PVC of the default StorageClass, a Bucket, a PrometheusShipper and a
// StoreGateway. It waits until all three are Ready, a block is shipped and
// the store gateway serves it, then deletes the samples again (their PVCs
// too) and waits for their pods to go, so later steps find the cluster as
// before.
func (s *suite) samplesReachReady() {
	s.t.Helper()
	pvcsBefore := s.pvcNames("default")
	s.runKubectl("apply", "-f", samplesDir)
	defer s.deleteSamples(pvcsBefore)

	key := func(name string) client.ObjectKey { return client.ObjectKey{Namespace: "default", Name: name} }
	// Pulls nothing (the images are imported), but the first block needs
	// Prometheus to run for 1.5 block durations and then the store gateway's
	// next sync.
	s.eventually("the samples Ready, a block shipped and served", 10*time.Minute, func() error {
		var b monitoringv1alpha1.Bucket
		if err := s.c.Get(s.ctx, key("metrics"), &b); err != nil {
			return fmt.Errorf("bucket: %w", err)
		}
		var sh monitoringv1alpha1.PrometheusShipper
		if err := s.c.Get(s.ctx, key("prometheus"), &sh); err != nil {
			return fmt.Errorf("prometheusshipper: %w", err)
		}
		var sg monitoringv1alpha1.StoreGateway
		if err := s.c.Get(s.ctx, key("store"), &sg); err != nil {
			return fmt.Errorf("storegateway: %w", err)
		}
		state := fmt.Sprintf("Bucket Ready=%s; PrometheusShipper Ready=%s uploaded=%d (%s); StoreGateway Ready=%s blocks=%d (%s)",
			conditionStatus(b.Status.Conditions, "Ready"),
			conditionStatus(sh.Status.Conditions, "Ready"), sh.Status.Uploaded, conditionReasonMessage(sh.Status.Conditions, "Ready"),
			conditionStatus(sg.Status.Conditions, "Ready"), sg.Status.Blocks, conditionReasonMessage(sg.Status.Conditions, "Ready"))
		switch {
		case conditionStatus(b.Status.Conditions, "Ready") != "True",
			conditionStatus(sh.Status.Conditions, "Ready") != "True",
			conditionStatus(sg.Status.Conditions, "Ready") != "True",
			sh.Status.Uploaded < 1, sg.Status.Blocks < 1:
			return fmt.Errorf("%s", state)
		}
		s.t.Logf("samples: %s", state)
		return nil
	})
}

// deleteSamples deletes what samplesReachReady applied, the PVCs the
// StatefulSets left behind (they outlive their StatefulSet) and waits until
// no pod of the samples is left.
func (s *suite) deleteSamples(pvcsBefore map[string]bool) {
	s.t.Helper()
	s.runKubectl("delete", "--ignore-not-found", "--wait=false", "-f", samplesDir)
	selector := client.MatchingLabels{"app.kubernetes.io/managed-by": "stevedore-operator"}
	s.eventually("the samples' pods gone", 3*time.Minute, func() error {
		var left []string
		var pods corev1.PodList
		if err := s.c.List(s.ctx, &pods, client.InNamespace("default"), selector); err != nil {
			return err
		}
		for _, p := range pods.Items {
			left = append(left, p.Name)
		}
		var minioPods corev1.PodList
		if err := s.c.List(s.ctx, &minioPods, client.InNamespace("minio")); err != nil {
			return err
		}
		for _, p := range minioPods.Items {
			left = append(left, "minio/"+p.Name)
		}
		if len(left) > 0 {
			return fmt.Errorf("pods left: %v", left)
		}
		return nil
	})
	for name := range s.pvcNames("default") {
		if pvcsBefore[name] {
			continue
		}
		pvc := &corev1.PersistentVolumeClaim{}
		pvc.Namespace, pvc.Name = "default", name
		if err := s.c.Delete(s.ctx, pvc); err != nil && !apierrors.IsNotFound(err) {
			s.t.Errorf("delete pvc %s: %v", name, err)
		}
	}
	s.eventually("the samples' volumes released", 3*time.Minute, func() error {
		var left []string
		for name := range s.pvcNames("default") {
			if !pvcsBefore[name] {
				left = append(left, name)
			}
		}
		var ns corev1.Namespace
		switch err := s.c.Get(s.ctx, client.ObjectKey{Name: "minio"}, &ns); {
		case err == nil:
			left = append(left, "namespace minio ("+string(ns.Status.Phase)+")")
		case !apierrors.IsNotFound(err):
			return err
		}
		if len(left) > 0 {
			return fmt.Errorf("still there: %v", left)
		}
		return nil
	})
}

func (s *suite) pvcNames(ns string) map[string]bool {
	s.t.Helper()
	var list corev1.PersistentVolumeClaimList
	if err := s.c.List(s.ctx, &list, client.InNamespace(ns)); err != nil {
		s.t.Fatalf("list pvcs: %v", err)
	}
	out := map[string]bool{}
	for _, p := range list.Items {
		out[p.Name] = true
	}
	return out
}

// runKubectl runs the cluster's kubectl (STEVEDORE_KUBE_BIN, KUBECONFIG from
// bin/e2e.env), the way a user applies the samples.
func (s *suite) runKubectl(args ...string) string {
	s.t.Helper()
	bin := "kubectl"
	if d := os.Getenv("STEVEDORE_KUBE_BIN"); d != "" {
		bin = filepath.Join(d, "kubectl")
	}
	ctx, cancel := context.WithTimeout(s.ctx, 3*time.Minute)
	defer cancel()
	var out bytes.Buffer
	cmd := exec.CommandContext(ctx, bin, args...)
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		s.t.Fatalf("kubectl %s: %v\n%s", strings.Join(args, " "), err, out.String())
	}
	return out.String()
}

func conditionReasonMessage(conds []metav1Condition, typ string) string {
	for _, c := range conds {
		if c.Type == typ {
			return c.Reason + ": " + c.Message
		}
	}
	return "no " + typ + " condition"
}
