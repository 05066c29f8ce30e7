package controllers

import (
	"context"
	"fmt"
	"math/rand/v2"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	storagev1 "k8s.io/api/storage/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/stevedore-dev/stevedore/api/v1alpha1"
)

// TestPendingPodsExplained: when the pods of a PrometheusShipper or a
// StoreGateway cannot start, their Ready condition (and the per-pod or
// per-shard detail, and a Warning event) says why, from the pods, their
// PVCs and StorageClasses read on the real API server.
//
// envtest runs no StatefulSet controller, scheduler, kubelet or PV
// controller: the test creates the PVC and the pod the StatefulSet
// controller would, and writes their status the way the scheduler, kubelet
// and PV controller would (and the PV controller's Warning event). That is
// the one stand-in here; everything the operator reads is real API objects.
func TestPendingPodsExplained(t *testing.T) {
	requireEnv(t)
	ctx := context.Background()
	// A StorageClass that exists (cluster-scoped, named per run), with an
	// external provisioner that never answers.
	slow := fmt.Sprintf("slow-%d", rand.IntN(1e6))
	sc := &storagev1.StorageClass{ObjectMeta: metav1.ObjectMeta{Name: slow}, Provisioner: "example.com/never"}
	if err := k8s.Create(ctx, sc); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = k8s.Delete(ctx, sc) })

	unschedulable := corev1.PodCondition{Type: corev1.PodScheduled, Status: corev1.ConditionFalse, Reason: corev1.PodReasonUnschedulable}
	scheduledCond := corev1.PodCondition{Type: corev1.PodScheduled, Status: corev1.ConditionTrue}
	waitingIn := func(container, reason, message string) func(*corev1.Pod) {
		return func(p *corev1.Pod) {
			p.Status.Conditions = []corev1.PodCondition{scheduledCond}
			p.Status.ContainerStatuses = []corev1.ContainerStatus{{
				Name: container, Image: containerImage(p, corev1.ContainerStatus{Name: container}),
				State: corev1.ContainerState{Waiting: &corev1.ContainerStateWaiting{Reason: reason, Message: message}},
			}}
		}
	}
	pvcPending := func(p *corev1.Pod) {
		c := unschedulable
		c.Message = "0/1 nodes are available: pod has unbound immediate PersistentVolumeClaims. preemption: 0/1 nodes are available: 1 Preemption is not helpful for scheduling."
		p.Status.Conditions = []corev1.PodCondition{c}
	}
	storage := func(class string) string {
		s := "    storage:\n      volumeClaimTemplate:\n        accessModes: [ReadWriteOnce]\n        resources: {requests: {storage: 1Gi}}\n"
		if class != "" {
			s += "        storageClassName: " + class + "\n"
		}
		return s
	}

	for _, tc := range []struct {
		name  string
		kind  string // PrometheusShipper or StoreGateway
		extra string // spec lines: storage of spec.prometheus, or of spec.indexHeader
		// pvcWarning is the PV controller's Warning event on the claim, if any.
		pvcWarning string
		podStatus  func(*corev1.Pod)
		reason     string
		want       []string
	}{
		{
			name: "no StorageClass and no default", kind: "PrometheusShipper", extra: storage(""), podStatus: pvcPending,
			reason: ReasonVolumePending,
			want: []string{"PVC data-prometheus-0 is Pending: no StorageClass is set and the cluster has no default StorageClass",
				"spec.prometheus.storage.volumeClaimTemplate.storageClassName"},
		},
		{
			name: "StorageClass does not exist", kind: "StoreGateway", extra: storage("fast"), podStatus: pvcPending,
			reason: ReasonVolumePending,
			want:   []string{`PVC data-store-shard-0-0 is Pending: StorageClass "fast" does not exist`, "spec.indexHeader.storage.volumeClaimTemplate.storageClassName"},
		},
		{
			name: "provisioner fails", kind: "PrometheusShipper", extra: storage(slow), podStatus: pvcPending,
			pvcWarning: `failed to provision volume with StorageClass "` + slow + `": rpc error: code = ResourceExhausted desc = volume quota exceeded`,
			reason:     ReasonVolumePending,
			want:       []string{"PVC data-prometheus-0 is Pending: waiting for a volume from provisioner example.com/never", "volume quota exceeded"},
		},
		{
			name: "unschedulable", kind: "StoreGateway",
			podStatus: func(p *corev1.Pod) {
				c := unschedulable
				c.Message = "0/1 nodes are available: 1 Insufficient cpu. preemption: 0/1 nodes are available: 1 No preemption victims found for incoming pod."
				p.Status.Conditions = []corev1.PodCondition{c}
			},
			reason: ReasonUnschedulable,
			want:   []string{"pod store-shard-0-0 cannot be scheduled: 0/1 nodes are available: 1 Insufficient cpu", "lower spec.agent.resources.requests"},
		},
		{
			name: "image pull", kind: "PrometheusShipper",
			podStatus: waitingIn("agent", "ImagePullBackOff", `Back-off pulling image "`+testAgentImage+`"`),
			reason:    ReasonImagePullFailed,
			want:      []string{"pod prometheus-0: container agent cannot pull image \"" + testAgentImage + "\"", "Back-off pulling image"},
		},
		{
			name: "crash loop", kind: "StoreGateway",
			podStatus: func(p *corev1.Pod) {
				p.Status.Phase = corev1.PodRunning
				p.Status.Conditions = []corev1.PodCondition{scheduledCond}
				p.Status.ContainerStatuses = []corev1.ContainerStatus{{
					Name: "agent", Image: testAgentImage, RestartCount: 4,
					State:                corev1.ContainerState{Waiting: &corev1.ContainerStateWaiting{Reason: "CrashLoopBackOff", Message: "back-off 1m20s restarting failed container=agent"}},
					LastTerminationState: corev1.ContainerState{Terminated: &corev1.ContainerStateTerminated{Reason: "Error", ExitCode: 2}},
				}}
			},
			reason: ReasonCrashLooping,
			want:   []string{"container agent is crash looping (4 restarts, last exit: Error, exit code 2)", "kubectl logs -n", "store-shard-0-0 -c agent --previous"},
		},
		{
			name: "missing Secret key", kind: "PrometheusShipper",
			podStatus: waitingIn("prometheus", "CreateContainerConfigError", `couldn't find key token in Secret creds`),
			reason:    ReasonContainerConfigError,
			want:      []string{"pod prometheus-0: container prometheus cannot be created: CreateContainerConfigError: couldn't find key token in Secret creds"},
		},
		{
			name: "starting", kind: "StoreGateway",
			podStatus: waitingIn("agent", "ContainerCreating", ""),
			reason:    ReasonPodsPending,
			want:      []string{"pod store-shard-0-0 is Pending: waiting for container(s) agent (ContainerCreating) to become ready"},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ns := newNamespace(t)
			name, stsName := "prometheus", "prometheus"
			manifest := fmt.Sprintf(pendingShipperYAML, tc.extra)
			if tc.kind == "StoreGateway" {
				name, stsName = "store", shardName("store", 0)
				if tc.extra != "" {
					tc.extra = "  indexHeader:\n" + tc.extra
				}
				manifest = fmt.Sprintf(storeYAML, 1, tc.extra)
			}
			mustKubectl(t, []byte(manifest), "apply", "-n", ns, "-f", "-")
			sts := getStatefulSet(t, ns, stsName)
			pod := standInPendingPod(t, sts, 0, tc.pvcWarning)
			tc.podStatus(pod)
			if err := k8s.Status().Update(ctx, pod); err != nil {
				t.Fatalf("write pod status: %v", err)
			}

			var conds []metav1.Condition
			var detail string
			eventually(t, 30*time.Second, "Ready explains the pending pod", func() error {
				var err error
				conds, detail, err = readinessOf(ctx, tc.kind, ns, name)
				if err != nil {
					return err
				}
				c := meta.FindStatusCondition(conds, v1alpha1.ConditionReady)
				if c == nil || c.Status != metav1.ConditionFalse || c.Reason != tc.reason {
					return fmt.Errorf("Ready is %+v, want False %s", c, tc.reason)
				}
				for _, w := range tc.want {
					if !strings.Contains(c.Message, w) {
						return fmt.Errorf("Ready message %q does not contain %q", c.Message, w)
					}
				}
				return nil
			})
			if !strings.Contains(detail, tc.want[0]) {
				t.Errorf("per-pod detail %q does not contain %q", detail, tc.want[0])
			}
			if strings.Contains(detail, errNoAddress.Error()) {
				t.Errorf("per-pod detail %q still says only %q", detail, errNoAddress)
			}
			waitEvent(t, ns, name, tc.reason)
		})
	}
}

const pendingShipperYAML = `apiVersion: v1
kind: Secret
metadata: {name: creds}
stringData: {access_key: a, secret_key: b}
---
apiVersion: monitoring.stevedore.dev/v1alpha1
kind: Bucket
metadata: {name: metrics}
spec:
  type: S3
  s3: {bucket: metrics, endpoint: "127.0.0.1:1", insecure: true, credentials: {secretName: creds}}
---
apiVersion: monitoring.stevedore.dev/v1alpha1
kind: PrometheusShipper
metadata: {name: prometheus}
spec:
  bucketRef: {name: metrics}
  prometheus:
    replicas: 1
    externalLabels: {cluster: test}
%s`

// standInPendingPod creates what the StatefulSet controller would for
// ordinal: a PVC per claim template (Pending, with the PV controller's
// Warning event when warning is set) and the pod using them. It returns the
// pod, whose status the caller writes.
func standInPendingPod(t *testing.T, sts *appsv1.StatefulSet, ordinal int, warning string) *corev1.Pod {
	t.Helper()
	ctx := context.Background()
	name := fmt.Sprintf("%s-%d", sts.Name, ordinal)
	pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: sts.Namespace, Labels: sts.Spec.Template.Labels}}
	sts.Spec.Template.Spec.DeepCopyInto(&pod.Spec)
	for _, tmpl := range sts.Spec.VolumeClaimTemplates {
		pvc := &corev1.PersistentVolumeClaim{
			ObjectMeta: metav1.ObjectMeta{Name: tmpl.Name + "-" + name, Namespace: sts.Namespace, Labels: sts.Spec.Selector.MatchLabels},
			Spec:       tmpl.Spec,
		}
		if err := k8s.Create(ctx, pvc); err != nil {
			t.Fatalf("create PVC: %v", err)
		}
		pvc.Status.Phase = corev1.ClaimPending // as the PV controller leaves it
		if err := k8s.Status().Update(ctx, pvc); err != nil {
			t.Fatalf("write PVC status: %v", err)
		}
		if warning != "" {
			now := metav1.Now()
			ev := &corev1.Event{
				ObjectMeta:     metav1.ObjectMeta{GenerateName: pvc.Name + ".", Namespace: sts.Namespace},
				InvolvedObject: corev1.ObjectReference{Kind: "PersistentVolumeClaim", APIVersion: "v1", Namespace: sts.Namespace, Name: pvc.Name, UID: pvc.UID},
				Type:           corev1.EventTypeWarning, Reason: "ProvisioningFailed", Message: warning,
				Source:         corev1.EventSource{Component: "persistentvolume-controller"},
				FirstTimestamp: now, LastTimestamp: now, Count: 1,
			}
			if err := k8s.Create(ctx, ev); err != nil {
				t.Fatalf("create PVC event: %v", err)
			}
		}
		pod.Spec.Volumes = append(pod.Spec.Volumes, corev1.Volume{Name: tmpl.Name, VolumeSource: corev1.VolumeSource{
			PersistentVolumeClaim: &corev1.PersistentVolumeClaimVolumeSource{ClaimName: pvc.Name},
		}})
	}
	if err := k8s.Create(ctx, pod); err != nil {
		t.Fatalf("create pod %s: %v", name, err)
	}
	return pod
}

// readinessOf returns the conditions of a PrometheusShipper or StoreGateway
// and its per-pod (per-shard) error detail.
func readinessOf(ctx context.Context, kind, ns, name string) ([]metav1.Condition, string, error) {
	key := client.ObjectKey{Namespace: ns, Name: name}
	if kind == "StoreGateway" {
		var g v1alpha1.StoreGateway
		if err := k8s.Get(ctx, key, &g); err != nil {
			return nil, "", err
		}
		var d []string
		for _, s := range g.Status.Shards {
			d = append(d, s.LastError)
		}
		return g.Status.Conditions, strings.Join(d, "; "), nil
	}
	var p v1alpha1.PrometheusShipper
	if err := k8s.Get(ctx, key, &p); err != nil {
		return nil, "", err
	}
	var d []string
	for _, r := range p.Status.Replicas {
		d = append(d, r.LastError)
	}
	return p.Status.Conditions, strings.Join(d, "; "), nil
}
