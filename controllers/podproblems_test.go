package controllers

import (
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	storagev1 "k8s.io/api/storage/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/tools/events"
	"k8s.io/utils/ptr"

	"github.com/stevedore-dev/stevedore/api/v1alpha1"
	"github.com/stevedore-dev/stevedore/internal/agentstatus"
)

// The pod and claim states below are the ones kubelet, the scheduler and
// the PV controller write; explainPod only reads them.

func problemPod(name string, mutate func(*corev1.Pod)) *corev1.Pod {
	p := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "ns"},
		Spec: corev1.PodSpec{
			InitContainers: []corev1.Container{{Name: "init-config", Image: "busybox:1"}},
			Containers: []corev1.Container{
				{Name: "prometheus", Image: "quay.io/prometheus/prometheus:v3.15.0"},
				{Name: "agent", Image: "stevedore-agent:v1"},
			},
			Volumes: []corev1.Volume{{Name: "data", VolumeSource: corev1.VolumeSource{
				PersistentVolumeClaim: &corev1.PersistentVolumeClaimVolumeSource{ClaimName: "data-" + name},
			}}},
		},
		Status: corev1.PodStatus{Phase: corev1.PodPending},
	}
	if mutate != nil {
		mutate(p)
	}
	return p
}

func scheduled(p *corev1.Pod) {
	p.Status.Conditions = append(p.Status.Conditions, corev1.PodCondition{Type: corev1.PodScheduled, Status: corev1.ConditionTrue})
}

func waiting(container, reason, message string) func(*corev1.Pod) {
	return func(p *corev1.Pod) {
		scheduled(p)
		p.Status.ContainerStatuses = append(p.Status.ContainerStatuses, corev1.ContainerStatus{
			Name: container, State: corev1.ContainerState{Waiting: &corev1.ContainerStateWaiting{Reason: reason, Message: message}},
		})
	}
}

func pendingClaim(name string, class *string, ann map[string]string) *corev1.PersistentVolumeClaim {
	return &corev1.PersistentVolumeClaim{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "ns", Annotations: ann},
		Spec:       corev1.PersistentVolumeClaimSpec{StorageClassName: class},
		Status:     corev1.PersistentVolumeClaimStatus{Phase: corev1.ClaimPending},
	}
}

func TestExplainPod(t *testing.T) {
	wffc := storagev1.VolumeBindingWaitForFirstConsumer
	for _, tc := range []struct {
		name   string
		pod    *corev1.Pod
		claims map[string]claimFacts
		reason string   // "" when no problem is expected
		want   []string // substrings of the message
	}{
		{
			name: "ready pod", reason: "",
			pod: problemPod("p-0", func(p *corev1.Pod) {
				scheduled(p)
				p.Status.Phase = corev1.PodRunning
				p.Status.Conditions = append(p.Status.Conditions, corev1.PodCondition{Type: corev1.PodReady, Status: corev1.ConditionTrue})
			}),
		},
		{
			name: "no StorageClass and no default", reason: ReasonVolumePending,
			pod:    problemPod("prometheus-0", nil),
			claims: map[string]claimFacts{"data-prometheus-0": {Claim: pendingClaim("data-prometheus-0", nil, nil), ClassesKnown: true}},
			want: []string{"PVC data-prometheus-0 is Pending: no StorageClass is set and the cluster has no default StorageClass",
				"set spec.prometheus.storage.volumeClaimTemplate.storageClassName or install a provisioner"},
		},
		{
			name: "no StorageClass, a default exists", reason: ReasonVolumePending,
			pod:    problemPod("prometheus-0", nil),
			claims: map[string]claimFacts{"data-prometheus-0": {Claim: pendingClaim("data-prometheus-0", nil, nil), ClassesKnown: true, DefaultClass: "standard"}},
			want:   []string{"PVC data-prometheus-0 is Pending", `default StorageClass "standard"`},
		},
		{
			name: "StorageClasses not readable", reason: ReasonVolumePending,
			pod:    problemPod("prometheus-0", nil),
			claims: map[string]claimFacts{"data-prometheus-0": {Claim: pendingClaim("data-prometheus-0", nil, nil)}},
			want:   []string{"PVC data-prometheus-0 is Pending: no StorageClass is set", "default StorageClass with a provisioner"},
		},
		{
			name: "StorageClass missing", reason: ReasonVolumePending,
			pod:    problemPod("prometheus-0", nil),
			claims: map[string]claimFacts{"data-prometheus-0": {Claim: pendingClaim("data-prometheus-0", ptr.To("fast"), nil), ClassesKnown: true}},
			want:   []string{`PVC data-prometheus-0 is Pending: StorageClass "fast" does not exist`},
		},
		{
			name: "explicitly no class", reason: ReasonVolumePending,
			pod:    problemPod("prometheus-0", nil),
			claims: map[string]claimFacts{"data-prometheus-0": {Claim: pendingClaim("data-prometheus-0", ptr.To(""), nil), ClassesKnown: true}},
			want:   []string{`storageClassName is ""`, "no PersistentVolume matches"},
		},
		{
			name: "waiting for the provisioner, with its error", reason: ReasonVolumePending,
			pod: problemPod("prometheus-0", nil),
			claims: map[string]claimFacts{"data-prometheus-0": {
				Claim:        pendingClaim("data-prometheus-0", ptr.To("fast"), map[string]string{annStorageProvisioner: "ebs.csi.aws.com"}),
				ClassesKnown: true, Class: &storagev1.StorageClass{ObjectMeta: metav1.ObjectMeta{Name: "fast"}, Provisioner: "ebs.csi.aws.com"},
				Warning: "failed to provision volume with StorageClass \"fast\": rpc error: quota exceeded",
			}},
			want: []string{"waiting for a volume from provisioner ebs.csi.aws.com", "quota exceeded"},
		},
		{
			name: "class without a provisioner", reason: ReasonVolumePending,
			pod: problemPod("prometheus-0", nil),
			claims: map[string]claimFacts{"data-prometheus-0": {
				Claim:        pendingClaim("data-prometheus-0", ptr.To("local"), nil),
				ClassesKnown: true, Class: &storagev1.StorageClass{ObjectMeta: metav1.ObjectMeta{Name: "local"}, Provisioner: noProvisioner},
			}},
			want: []string{`StorageClass "local" provisions nothing`, "create a matching PersistentVolume"},
		},
		{
			name: "claim does not exist", reason: ReasonVolumePending,
			pod:    problemPod("prometheus-0", nil),
			claims: map[string]claimFacts{"data-prometheus-0": {}},
			want:   []string{"PVC data-prometheus-0 does not exist"},
		},
		{
			// WaitForFirstConsumer: the claim waits for the scheduler, whose message says why.
			name: "wait for first consumer, unschedulable", reason: ReasonUnschedulable,
			pod: problemPod("prometheus-0", func(p *corev1.Pod) {
				p.Status.Conditions = []corev1.PodCondition{{Type: corev1.PodScheduled, Status: corev1.ConditionFalse, Reason: corev1.PodReasonUnschedulable,
					Message: "0/1 nodes are available: 1 Insufficient cpu. preemption: 0/1 nodes are available: 1 No preemption victims found for incoming pod."}}
			}),
			claims: map[string]claimFacts{"data-prometheus-0": {
				Claim:        pendingClaim("data-prometheus-0", ptr.To("local"), nil),
				ClassesKnown: true, Class: &storagev1.StorageClass{ObjectMeta: metav1.ObjectMeta{Name: "local"}, Provisioner: "rancher.io/local-path", VolumeBindingMode: &wffc},
			}},
			want: []string{"pod prometheus-0 cannot be scheduled: 0/1 nodes are available: 1 Insufficient cpu", "lower spec.agent.resources.requests or spec.prometheus.resources.requests"},
		},
		{
			name: "bound claim, taint", reason: ReasonUnschedulable,
			pod: problemPod("prometheus-0", func(p *corev1.Pod) {
				p.Status.Conditions = []corev1.PodCondition{{Type: corev1.PodScheduled, Status: corev1.ConditionFalse, Reason: corev1.PodReasonUnschedulable,
					Message: "0/3 nodes are available: 3 node(s) had untolerated taint {dedicated: db}."}}
			}),
			claims: map[string]claimFacts{"data-prometheus-0": {Claim: &corev1.PersistentVolumeClaim{Status: corev1.PersistentVolumeClaimStatus{Phase: corev1.ClaimBound}}}},
			want:   []string{"untolerated taint {dedicated: db}", "spec.pod.tolerations"},
		},
		{
			name: "not scheduled yet", reason: ReasonPodsPending,
			pod:  problemPod("prometheus-0", nil),
			want: []string{"pod prometheus-0 is Pending: waiting to be scheduled"},
		},
		{
			name: "image pull back-off", reason: ReasonImagePullFailed,
			pod:  problemPod("prometheus-0", waiting("agent", "ImagePullBackOff", `Back-off pulling image "stevedore-agent:v1"`)),
			want: []string{"container agent cannot pull image \"stevedore-agent:v1\"", "ImagePullBackOff", "Back-off pulling image"},
		},
		{
			name: "invalid image in an init container", reason: ReasonImagePullFailed,
			pod: problemPod("prometheus-0", func(p *corev1.Pod) {
				scheduled(p)
				p.Status.InitContainerStatuses = []corev1.ContainerStatus{{Name: "init-config", State: corev1.ContainerState{
					Waiting: &corev1.ContainerStateWaiting{Reason: "InvalidImageName", Message: `Failed to apply default image tag "busybox:1": couldn't parse image name`},
				}}}
			}),
			want: []string{"container init-config", `"busybox:1"`, "InvalidImageName"},
		},
		{
			name: "missing Secret key", reason: ReasonContainerConfigError,
			pod:  problemPod("prometheus-0", waiting("agent", "CreateContainerConfigError", `couldn't find key token in Secret ns/creds`)),
			want: []string{"container agent cannot be created", "couldn't find key token in Secret ns/creds"},
		},
		{
			name: "crash loop", reason: ReasonCrashLooping,
			pod: problemPod("prometheus-0", func(p *corev1.Pod) {
				scheduled(p)
				p.Status.Phase = corev1.PodRunning
				p.Status.ContainerStatuses = []corev1.ContainerStatus{{
					Name: "prometheus", RestartCount: 7,
					State:                corev1.ContainerState{Waiting: &corev1.ContainerStateWaiting{Reason: "CrashLoopBackOff", Message: "back-off 5m0s restarting failed container"}},
					LastTerminationState: corev1.ContainerState{Terminated: &corev1.ContainerStateTerminated{Reason: "OOMKilled", ExitCode: 137}},
				}}
			}),
			want: []string{"container prometheus is crash looping (7 restarts, last exit: OOMKilled, exit code 137)",
				"kubectl logs -n ns prometheus-0 -c prometheus --previous", "raise spec.prometheus.resources.limits.memory"},
		},
		{
			// Between back-offs the container runs again: still crash looping, so the reason does not flap.
			name: "crash loop, running between back-offs", reason: ReasonCrashLooping,
			pod: problemPod("prometheus-0", func(p *corev1.Pod) {
				scheduled(p)
				p.Status.Phase = corev1.PodRunning
				p.Status.ContainerStatuses = []corev1.ContainerStatus{{
					Name: "agent", RestartCount: 3,
					State:                corev1.ContainerState{Running: &corev1.ContainerStateRunning{}},
					LastTerminationState: corev1.ContainerState{Terminated: &corev1.ContainerStateTerminated{Reason: "Error", ExitCode: 1}},
				}}
			}),
			want: []string{"container agent is crash looping (3 restarts, last exit: Error, exit code 1)"},
		},
		{
			name: "still starting", reason: ReasonPodsPending,
			pod: problemPod("prometheus-0", func(p *corev1.Pod) {
				waiting("prometheus", "ContainerCreating", "")(p)
				p.Status.ContainerStatuses = append(p.Status.ContainerStatuses, corev1.ContainerStatus{Name: "agent", Ready: true})
			}),
			want: []string{"pod prometheus-0 is Pending: waiting for container(s) prometheus (ContainerCreating) to become ready"},
		},
		{
			name: "evicted", reason: ReasonPodFailed,
			pod: problemPod("prometheus-0", func(p *corev1.Pod) {
				p.Status.Phase, p.Status.Reason, p.Status.Message = corev1.PodFailed, "Evicted", "The node was low on resource: ephemeral-storage."
			}),
			want: []string{"pod prometheus-0 is Failed: Evicted: The node was low on resource"},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := explainPod(tc.pod, tc.claims, shipperHints)
			if tc.reason == "" {
				if got != nil {
					t.Fatalf("got %+v, want no problem", got)
				}
				return
			}
			if got == nil {
				t.Fatalf("got no problem, want %s", tc.reason)
			}
			if got.Reason != tc.reason {
				t.Errorf("reason %s, want %s (message %q)", got.Reason, tc.reason, got.Message)
			}
			for _, w := range tc.want {
				if !strings.Contains(got.Message, w) {
					t.Errorf("message %q does not contain %q", got.Message, w)
				}
			}
		})
	}
}

func TestSummarizeProblems(t *testing.T) {
	var ps []*podProblem
	for _, n := range []string{"p-0", "p-1", "p-2"} {
		ps = append(ps, explainPod(problemPod(n, nil), map[string]claimFacts{"data-" + n: {Claim: pendingClaim("data-"+n, ptr.To("fast"), nil), ClassesKnown: true}}, shipperHints))
	}
	ps = append(ps, explainPod(problemPod("p-3", waiting("agent", "ErrImagePull", "not found")), nil, shipperHints))
	for i := range 5 {
		ps = append(ps, &podProblem{Reason: ReasonPodsPending, Message: "starting", key: string(rune('a' + i))})
	}
	reason, msg := summarizeProblems(ps, 3)
	if reason != ReasonImagePullFailed {
		t.Errorf("reason %s, want %s (ranked first)", reason, ReasonImagePullFailed)
	}
	for _, w := range []string{"pod p-3: container agent cannot pull image", "PVC data-p-0 is Pending", "(and 2 more pod(s))", "and 4 more problem(s)"} {
		if !strings.Contains(msg, w) {
			t.Errorf("message %q does not contain %q", msg, w)
		}
	}
	if strings.Contains(msg, "data-p-1") {
		t.Errorf("message %q lists a second pod of the same problem", msg)
	}
	if r, m := summarizeProblems(nil, 3); r != "" || m != "" {
		t.Errorf("no problems: %q %q", r, m)
	}
}

// TestPendingStatusEvents: the Ready condition carries the pod problem's
// reason, and a Warning event is recorded when the reason changes, not on
// every poll.
func TestPendingStatusEvents(t *testing.T) {
	rec := events.NewFakeRecorder(100)
	r := &PrometheusShipperReconciler{status: statusWriter{recorder: rec, metrics: newMetrics(nil), kind: "PrometheusShipper"}}
	p := &v1alpha1.PrometheusShipper{ObjectMeta: metav1.ObjectMeta{Name: "prometheus", Namespace: "ns"}}
	pod := problemPod("prometheus-0", nil)
	pods := []corev1.Pod{*pod}
	obs := map[string]observation{"prometheus-0": {Err: errNoAddress}}
	volume := map[string]*podProblem{"prometheus-0": explainPod(pod, map[string]claimFacts{"data-prometheus-0": {Claim: pendingClaim("data-prometheus-0", nil, nil), ClassesKnown: true}}, shipperHints)}

	for range 3 {
		r.updateStatus(p, pods, obs, volume)
	}
	c := meta.FindStatusCondition(p.Status.Conditions, v1alpha1.ConditionReady)
	if c == nil || c.Status != metav1.ConditionFalse || c.Reason != ReasonVolumePending || !strings.Contains(c.Message, "0/1 replica(s) ready: pod prometheus-0: PVC data-prometheus-0 is Pending") {
		t.Fatalf("Ready: %+v", c)
	}
	if got := p.Status.Replicas[0].LastError; !strings.Contains(got, "PVC data-prometheus-0 is Pending") {
		t.Errorf("replica lastError %q", got)
	}
	if ev := drain(rec); strings.Count(ev, "Warning VolumePending") != 1 || strings.Contains(ev, "no address") {
		t.Errorf("events after three polls: %q, want one VolumePending warning", ev)
	}

	crash := problemPod("prometheus-0", waiting("agent", "CrashLoopBackOff", ""))
	r.updateStatus(p, []corev1.Pod{*crash}, obs, map[string]*podProblem{"prometheus-0": explainPod(crash, nil, shipperHints)})
	if c := meta.FindStatusCondition(p.Status.Conditions, v1alpha1.ConditionReady); c.Reason != ReasonCrashLooping {
		t.Errorf("Ready: %+v", c)
	}
	if ev := drain(rec); !strings.Contains(ev, "Warning CrashLooping") {
		t.Errorf("no CrashLooping warning in %q", ev)
	}

	// A pod that is only starting and has no address yet says so, with its phase.
	starting := problemPod("prometheus-0", waiting("prometheus", "ContainerCreating", ""))
	startingProblems := map[string]*podProblem{"prometheus-0": explainPod(starting, nil, shipperHints)}
	r.updateStatus(p, []corev1.Pod{*starting}, obs, startingProblems)
	if c := meta.FindStatusCondition(p.Status.Conditions, v1alpha1.ConditionReady); c.Reason != ReasonPodsPending || !strings.Contains(c.Message, "is Pending: waiting for container(s) prometheus (ContainerCreating)") {
		t.Errorf("Ready: %+v", c)
	}
	// Once its agent answers, "starting" no longer hides the agent's state.
	ready := map[string]observation{"prometheus-0": {Status: &agentstatus.Status{Component: agentstatus.ComponentSidecar, Ready: true,
		Sidecar: &agentstatus.SidecarStatus{PrometheusReachable: true, UploadsEnabled: true}}}}
	r.updateStatus(p, []corev1.Pod{*starting}, ready, startingProblems)
	if c := meta.FindStatusCondition(p.Status.Conditions, v1alpha1.ConditionReady); c.Status != metav1.ConditionTrue || c.Reason != ReasonReady {
		t.Errorf("Ready with a reporting agent: %+v", c)
	}
}
