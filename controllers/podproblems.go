package controllers

import (
	"context"
	"fmt"
	"sort"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	storagev1 "k8s.io/api/storage/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/fields"
	"sigs.k8s.io/controller-runtime/pkg/client"
	logf "sigs.k8s.io/controller-runtime/pkg/log"
)

// Reasons of a Ready condition that explain why pods do not run. Ordered by
// podProblemOrder when pods fail in different ways.
const (
	ReasonPodsPending          = "PodsPending"
	ReasonVolumePending        = "VolumePending"
	ReasonUnschedulable        = "Unschedulable"
	ReasonImagePullFailed      = "ImagePullFailed"
	ReasonCrashLooping         = "CrashLooping"
	ReasonContainerConfigError = "ContainerConfigError"
	ReasonPodFailed            = "PodFailed"
)

// podProblemOrder ranks reasons: the condition takes the reason of the first
// one present. Problems a user must fix come before "still starting".
var podProblemOrder = []string{
	ReasonContainerConfigError, ReasonImagePullFailed, ReasonCrashLooping,
	ReasonVolumePending, ReasonUnschedulable, ReasonPodFailed, ReasonPodsPending,
}

// +kubebuilder:rbac:groups="",resources=persistentvolumeclaims,verbs=get
// +kubebuilder:rbac:groups=storage.k8s.io,resources=storageclasses,verbs=get;list
// +kubebuilder:rbac:groups="",resources=events,verbs=list

// podProblem says why one pod is not ready, in words a user can act on.
type podProblem struct {
	// Reason is the condition reason (ReasonVolumePending, ...).
	Reason string
	// Message names the pod and what it waits for.
	Message string
	// key is the same for the same problem on different pods (the pod's
	// own names left out), so that a summary can say "and N more".
	key string
}

// starting reports that no problem was found: the pod is only not ready yet.
func (p *podProblem) starting() bool { return p != nil && p.Reason == ReasonPodsPending }

// specHints name the spec fields a user changes to fix a problem.
type specHints struct {
	// StorageClass is the field of the claim template's storageClassName.
	StorageClass string
	// Resources maps a container name to the spec field of its resources.
	Resources map[string]string
}

var (
	shipperHints = specHints{
		StorageClass: "spec.prometheus.storage.volumeClaimTemplate.storageClassName",
		Resources:    map[string]string{"prometheus": "spec.prometheus.resources", "agent": "spec.agent.resources"},
	}
	storeGatewayHints = specHints{
		StorageClass: "spec.indexHeader.storage.volumeClaimTemplate.storageClassName",
		Resources:    map[string]string{"agent": "spec.agent.resources"},
	}
)

func (h specHints) resources(suffix string) string {
	out := make([]string, 0, len(h.Resources))
	for _, f := range h.Resources {
		out = append(out, f+suffix)
	}
	sort.Strings(out)
	return strings.Join(out, " or ")
}

// claimFacts is what a pod's PersistentVolumeClaim depends on, read by diagnosePods.
type claimFacts struct {
	// Claim is nil when the claim does not exist.
	Claim *corev1.PersistentVolumeClaim
	// ClassesKnown is false when StorageClasses could not be read (e.g. a
	// namespace-scoped operator): Class and DefaultClass are then unknown.
	ClassesKnown bool
	// Class is the claim's StorageClass, nil when it names none or it does not exist.
	Class *storagev1.StorageClass
	// DefaultClass is the cluster's default StorageClass, "" when there is none.
	DefaultClass string
	// Warning is the message of the claim's latest Warning event, e.g. the provisioner's error.
	Warning string
}

// Kubelet's waiting reasons (pkg/kubelet/images, kuberuntime).
var (
	imagePullReasons    = map[string]bool{"ErrImagePull": true, "ImagePullBackOff": true, "InvalidImageName": true, "ErrImageNeverPull": true, "RegistryUnavailable": true}
	containerConfigErrs = map[string]bool{"CreateContainerConfigError": true, "CreateContainerError": true, "RunContainerError": true}
)

const (
	annStorageProvisioner = "volume.kubernetes.io/storage-provisioner"
	annBetaProvisioner    = "volume.beta.kubernetes.io/storage-provisioner"
	annSelectedNode       = "volume.kubernetes.io/selected-node"
	annDefaultClass       = "storageclass.kubernetes.io/is-default-class"
	annBetaDefaultClass   = "storageclass.beta.kubernetes.io/is-default-class"
	noProvisioner         = "kubernetes.io/no-provisioner"
)

// explainPod says why pod is not ready, or returns nil when it is. claims
// holds the facts of the pod's PersistentVolumeClaims by claim name; a claim
// missing from it was not looked at. It only reads its arguments.
func explainPod(pod *corev1.Pod, claims map[string]claimFacts, hints specHints) *podProblem {
	if pod.DeletionTimestamp != nil || podConditionTrue(pod, corev1.PodReady) {
		return nil
	}
	name := pod.Name
	if pod.Status.Phase == corev1.PodFailed || pod.Status.Phase == corev1.PodSucceeded {
		why := joinNonEmpty(": ", pod.Status.Reason, pod.Status.Message)
		if why == "" {
			why = "its containers exited"
		}
		return &podProblem{ReasonPodFailed, fmt.Sprintf("pod %s is %s: %s", name, pod.Status.Phase, why), ReasonPodFailed + "|" + pod.Status.Reason}
	}
	statuses := append(append([]corev1.ContainerStatus(nil), pod.Status.InitContainerStatuses...), pod.Status.ContainerStatuses...)
	for _, cs := range statuses {
		if p := explainContainer(pod, cs, hints); p != nil {
			return p
		}
	}
	if !podConditionTrue(pod, corev1.PodScheduled) {
		for _, v := range pod.Spec.Volumes {
			if v.PersistentVolumeClaim == nil {
				continue
			}
			f, ok := claims[v.PersistentVolumeClaim.ClaimName]
			if !ok {
				continue
			}
			if p := explainClaim(pod, v.PersistentVolumeClaim.ClaimName, f, hints); p != nil {
				return p
			}
		}
		if c := podCondition(pod, corev1.PodScheduled); c != nil && c.Status == corev1.ConditionFalse && c.Reason == corev1.PodReasonUnschedulable {
			msg := strings.TrimSpace(c.Message)
			return &podProblem{ReasonUnschedulable, fmt.Sprintf("pod %s cannot be scheduled: %s; %s", name, msg, unschedulableHint(msg, hints)), ReasonUnschedulable + "|" + msg}
		}
		return &podProblem{ReasonPodsPending, fmt.Sprintf("pod %s is %s: waiting to be scheduled on a node", name, phaseOf(pod)), ReasonPodsPending + "|unscheduled"}
	}
	var waiting []string
	for _, cs := range statuses {
		if cs.Ready || (cs.State.Terminated != nil && cs.State.Terminated.ExitCode == 0) {
			continue // ready, or an init container that completed
		}
		w := cs.Name
		if cs.State.Waiting != nil && cs.State.Waiting.Reason != "" {
			w += " (" + cs.State.Waiting.Reason + ")"
		}
		waiting = append(waiting, w)
	}
	msg := fmt.Sprintf("pod %s is %s: containers are starting", name, phaseOf(pod))
	if len(waiting) > 0 {
		msg = fmt.Sprintf("pod %s is %s: waiting for container(s) %s to become ready", name, phaseOf(pod), strings.Join(waiting, ", "))
	}
	return &podProblem{ReasonPodsPending, msg, ReasonPodsPending + "|" + string(pod.Status.Phase)}
}

// explainContainer reports image pulls, configuration errors and crash loops.
func explainContainer(pod *corev1.Pod, cs corev1.ContainerStatus, hints specHints) *podProblem {
	if w := cs.State.Waiting; w != nil {
		switch {
		case imagePullReasons[w.Reason]:
			return &podProblem{ReasonImagePullFailed,
				fmt.Sprintf("pod %s: container %s cannot pull image %q: %s", pod.Name, cs.Name, containerImage(pod, cs), joinNonEmpty(": ", w.Reason, w.Message)),
				ReasonImagePullFailed + "|" + cs.Name + "|" + containerImage(pod, cs)}
		case containerConfigErrs[w.Reason]:
			return &podProblem{ReasonContainerConfigError,
				fmt.Sprintf("pod %s: container %s cannot be created: %s", pod.Name, cs.Name, joinNonEmpty(": ", w.Reason, w.Message)),
				ReasonContainerConfigError + "|" + cs.Name + "|" + w.Message}
		}
	}
	// A crash-looping container alternates between CrashLoopBackOff, Running
	// and Terminated: any of them after a failed run counts, so that the
	// reason does not flap between polls.
	last := cs.LastTerminationState.Terminated
	if t := cs.State.Terminated; t != nil && t.ExitCode != 0 {
		last = t
	}
	backoff := cs.State.Waiting != nil && cs.State.Waiting.Reason == "CrashLoopBackOff"
	if cs.Ready || (!backoff && (last == nil || last.ExitCode == 0 && last.Reason != "OOMKilled")) {
		return nil
	}
	exit := "unknown"
	var key string
	if last != nil {
		exit = fmt.Sprintf("%s, exit code %d", defaultString(last.Reason, "Error"), last.ExitCode)
		key = fmt.Sprintf("%s|%d", last.Reason, last.ExitCode)
	}
	msg := fmt.Sprintf("pod %s: container %s is crash looping (%d restarts, last exit: %s); see kubectl logs -n %s %s -c %s --previous",
		pod.Name, cs.Name, cs.RestartCount, exit, pod.Namespace, pod.Name, cs.Name)
	if last != nil && last.Reason == "OOMKilled" {
		if f, ok := hints.Resources[cs.Name]; ok {
			msg += "; it ran out of memory: raise " + f + ".limits.memory"
		}
	}
	return &podProblem{ReasonCrashLooping, msg, ReasonCrashLooping + "|" + cs.Name + "|" + key}
}

// explainClaim says why a claim keeps the pod from being scheduled, or nil
// when the claim is bound or the scheduler has yet to pick a node for it.
func explainClaim(pod *corev1.Pod, name string, f claimFacts, hints specHints) *podProblem {
	pvc := f.Claim
	problem := func(cause, why string) *podProblem {
		return &podProblem{ReasonVolumePending, fmt.Sprintf("pod %s: PVC %s is Pending: %s", pod.Name, name, why), ReasonVolumePending + "|" + cause}
	}
	if pvc == nil {
		return &podProblem{ReasonVolumePending, fmt.Sprintf("pod %s: PVC %s does not exist yet (the StatefulSet controller creates it)", pod.Name, name), ReasonVolumePending + "|missing"}
	}
	switch pvc.Status.Phase {
	case corev1.ClaimBound:
		return nil
	case corev1.ClaimLost:
		return &podProblem{ReasonVolumePending, fmt.Sprintf("pod %s: PVC %s is Lost: its PersistentVolume %q no longer exists; delete the PVC so that the StatefulSet creates a new one (its data is gone)", pod.Name, name, pvc.Spec.VolumeName), ReasonVolumePending + "|lost"}
	}
	withWarning := func(s string) string {
		if f.Warning != "" {
			return s + ": " + truncate(f.Warning, 512)
		}
		return s
	}
	sc := pvc.Spec.StorageClassName
	switch {
	case sc == nil && !f.ClassesKnown:
		return problem("noclass", withWarning(fmt.Sprintf("no StorageClass is set; set %s or make sure the cluster has a default StorageClass with a provisioner", hints.StorageClass)))
	case sc == nil && f.DefaultClass == "":
		return problem("noclass", fmt.Sprintf("no StorageClass is set and the cluster has no default StorageClass; set %s or install a provisioner", hints.StorageClass))
	case sc == nil:
		return problem("noclass", withWarning(fmt.Sprintf("no StorageClass is set; waiting for the default StorageClass %q to be assigned", f.DefaultClass)))
	case *sc == "":
		return problem("emptyclass", withWarning(fmt.Sprintf(`storageClassName is "" (no dynamic provisioning) and no PersistentVolume matches; create one or set %s`, hints.StorageClass)))
	case f.ClassesKnown && f.Class == nil:
		return problem("classmissing|"+*sc, fmt.Sprintf("StorageClass %q does not exist; create it or set %s to an existing one", *sc, hints.StorageClass))
	case f.Class != nil && f.Class.Provisioner == noProvisioner:
		return problem("noprovisioner|"+*sc, withWarning(fmt.Sprintf("StorageClass %q provisions nothing (%s); create a matching PersistentVolume", *sc, noProvisioner)))
	}
	prov := pvc.Annotations[annStorageProvisioner]
	if prov == "" {
		prov = pvc.Annotations[annBetaProvisioner]
	}
	if prov == "" && f.Class != nil {
		prov = f.Class.Provisioner
	}
	wffc := f.Class != nil && f.Class.VolumeBindingMode != nil && *f.Class.VolumeBindingMode == storagev1.VolumeBindingWaitForFirstConsumer
	if wffc && pvc.Annotations[annSelectedNode] == "" && f.Warning == "" {
		return nil // the volume is made once the scheduler picks a node: scheduling explains the rest
	}
	if prov == "" {
		return problem("waiting|"+*sc, withWarning(fmt.Sprintf("waiting for a volume of StorageClass %q", *sc)))
	}
	return problem("waiting|"+*sc, withWarning(fmt.Sprintf("waiting for a volume from provisioner %s (StorageClass %q)", prov, *sc)))
}

func unschedulableHint(msg string, hints specHints) string {
	switch {
	case strings.Contains(msg, "Insufficient"):
		return "lower " + hints.resources(".requests") + " or add nodes with room for them"
	case strings.Contains(msg, "untolerated taint"), strings.Contains(msg, "had taint"):
		return "add tolerations (spec.pod.tolerations) or nodes without the taint"
	case strings.Contains(msg, "affinity"), strings.Contains(msg, "selector"):
		return "check spec.pod.nodeSelector and spec.pod.affinity against the nodes' labels"
	case strings.Contains(msg, "PersistentVolumeClaim"), strings.Contains(msg, "volume"):
		return "check the pod's PersistentVolumeClaims (kubectl describe pvc)"
	}
	return "check the pod's resource requests, node selector, affinity and tolerations"
}

// summarizeProblems folds pod problems into one bounded message and the
// reason of the highest-ranked problem: the first pod of each distinct
// problem, "and N more" for the others, at most limit distinct problems.
func summarizeProblems(problems []*podProblem, limit int) (reason, message string) {
	type group struct {
		first *podProblem
		more  int
	}
	var order []string
	groups := map[string]*group{}
	for _, p := range problems {
		if p == nil {
			continue
		}
		g := groups[p.key]
		if g == nil {
			groups[p.key] = &group{first: p}
			order = append(order, p.key)
			continue
		}
		g.more++
	}
	if len(order) == 0 {
		return "", ""
	}
	rank := func(r string) int {
		for i, o := range podProblemOrder {
			if o == r {
				return i
			}
		}
		return len(podProblemOrder)
	}
	sort.SliceStable(order, func(i, j int) bool { return rank(groups[order[i]].first.Reason) < rank(groups[order[j]].first.Reason) })
	var parts []string
	for i, k := range order {
		if i == limit {
			parts = append(parts, fmt.Sprintf("and %d more problem(s)", len(order)-limit))
			break
		}
		g := groups[k]
		s := g.first.Message
		if g.more > 0 {
			s += fmt.Sprintf(" (and %d more pod(s))", g.more)
		}
		parts = append(parts, s)
	}
	return groups[order[0]].first.Reason, strings.Join(parts, "; ")
}

// diagnosePods explains every pod that is not ready, reading the claims of
// the pods that are not scheduled yet (and their StorageClasses and latest
// Warning event) through r, an uncached reader: only pending pods cost a
// read, and the manager caches no claims or classes. Read errors leave
// facts out rather than fail the reconcile.
func diagnosePods(ctx context.Context, r client.Reader, pods []corev1.Pod, hints specHints) map[string]*podProblem {
	out := map[string]*podProblem{}
	var classes *classCache
	for i := range pods {
		pod := &pods[i]
		if pod.DeletionTimestamp != nil || podConditionTrue(pod, corev1.PodReady) {
			continue
		}
		claims := map[string]claimFacts{}
		if !podConditionTrue(pod, corev1.PodScheduled) {
			if classes == nil {
				classes = &classCache{reader: r}
			}
			for _, v := range pod.Spec.Volumes {
				if v.PersistentVolumeClaim == nil {
					continue
				}
				if f, ok := readClaimFacts(ctx, r, classes, pod.Namespace, v.PersistentVolumeClaim.ClaimName); ok {
					claims[v.PersistentVolumeClaim.ClaimName] = f
				}
			}
		}
		if p := explainPod(pod, claims, hints); p != nil {
			out[pod.Name] = p
		}
	}
	return out
}

// classCache reads StorageClasses at most once per diagnosePods call.
type classCache struct {
	reader  client.Reader
	done    bool
	known   bool
	byName  map[string]*storagev1.StorageClass
	dflt    string
	listErr error
}

func (c *classCache) load(ctx context.Context) {
	if c.done {
		return
	}
	c.done = true
	var list storagev1.StorageClassList
	if err := c.reader.List(ctx, &list); err != nil {
		c.listErr = err
		if !apierrors.IsForbidden(err) {
			logf.FromContext(ctx).Info("cannot list StorageClasses to explain a pending PVC", "error", err.Error())
		}
		return
	}
	c.known = true
	c.byName = map[string]*storagev1.StorageClass{}
	for i := range list.Items {
		sc := &list.Items[i]
		c.byName[sc.Name] = sc
		if isDefaultClass(sc) && (c.dflt == "" || sc.Name < c.dflt) {
			c.dflt = sc.Name
		}
	}
}

func isDefaultClass(sc *storagev1.StorageClass) bool {
	return sc.Annotations[annDefaultClass] == "true" || sc.Annotations[annBetaDefaultClass] == "true"
}

// readClaimFacts reads one claim and what it depends on; ok is false when the
// claim could not be read for another reason than not existing.
func readClaimFacts(ctx context.Context, r client.Reader, classes *classCache, namespace, name string) (claimFacts, bool) {
	log := logf.FromContext(ctx)
	var pvc corev1.PersistentVolumeClaim
	if err := r.Get(ctx, client.ObjectKey{Namespace: namespace, Name: name}, &pvc); err != nil {
		if apierrors.IsNotFound(err) {
			return claimFacts{}, true
		}
		log.Info("cannot read a pending pod's PVC", "pvc", name, "error", err.Error())
		return claimFacts{}, false
	}
	f := claimFacts{Claim: &pvc}
	if pvc.Status.Phase == corev1.ClaimBound {
		return f, true
	}
	classes.load(ctx)
	f.ClassesKnown, f.DefaultClass = classes.known, classes.dflt
	if sc := pvc.Spec.StorageClassName; sc != nil && classes.known {
		f.Class = classes.byName[*sc]
	}
	f.Warning = latestWarning(ctx, r, &pvc)
	return f, true
}

// latestWarning returns the message of the newest Warning event about pvc,
// e.g. a provisioner's "failed to provision volume ...", or "".
func latestWarning(ctx context.Context, r client.Reader, pvc *corev1.PersistentVolumeClaim) string {
	var list corev1.EventList
	sel := fields.SelectorFromSet(fields.Set{
		"involvedObject.kind": "PersistentVolumeClaim",
		"involvedObject.name": pvc.Name,
		"involvedObject.uid":  string(pvc.UID),
		"type":                corev1.EventTypeWarning,
	})
	if err := r.List(ctx, &list, client.InNamespace(pvc.Namespace), client.MatchingFieldsSelector{Selector: sel}); err != nil {
		if !apierrors.IsForbidden(err) {
			logf.FromContext(ctx).Info("cannot list the events of a pending PVC", "pvc", pvc.Name, "error", err.Error())
		}
		return ""
	}
	var newest *corev1.Event
	for i := range list.Items {
		if e := &list.Items[i]; newest == nil || eventTime(e).After(eventTime(newest)) {
			newest = e
		}
	}
	if newest == nil {
		return ""
	}
	return strings.TrimSpace(newest.Message)
}

func eventTime(e *corev1.Event) time.Time {
	switch {
	case !e.LastTimestamp.IsZero():
		return e.LastTimestamp.Time
	case !e.EventTime.IsZero():
		return e.EventTime.Time
	}
	return e.CreationTimestamp.Time
}

func podCondition(pod *corev1.Pod, t corev1.PodConditionType) *corev1.PodCondition {
	for i := range pod.Status.Conditions {
		if pod.Status.Conditions[i].Type == t {
			return &pod.Status.Conditions[i]
		}
	}
	return nil
}

func podConditionTrue(pod *corev1.Pod, t corev1.PodConditionType) bool {
	c := podCondition(pod, t)
	return c != nil && c.Status == corev1.ConditionTrue
}

func phaseOf(pod *corev1.Pod) string {
	if pod.Status.Phase == "" {
		return string(corev1.PodPending)
	}
	return string(pod.Status.Phase)
}

func containerImage(pod *corev1.Pod, cs corev1.ContainerStatus) string {
	for _, c := range append(append([]corev1.Container(nil), pod.Spec.InitContainers...), pod.Spec.Containers...) {
		if c.Name == cs.Name {
			return c.Image
		}
	}
	return cs.Image
}

func joinNonEmpty(sep string, parts ...string) string {
	var out []string
	for _, p := range parts {
		if p = strings.TrimSpace(p); p != "" {
			out = append(out, p)
		}
	}
	return strings.Join(out, sep)
}
