package controllers

import (
	"errors"
	"fmt"
	"slices"
	"sort"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"

	"github.com/stevedore-dev/stevedore/api/v1alpha1"
)

// updateStatus computes per-replica shipping state and the Ready,
// PrometheusHealthy and Shipping conditions from the last agent observations
// and, for pods that are not ready, from what keeps them from running.
func (r *PrometheusShipperReconciler) updateStatus(p *v1alpha1.PrometheusShipper, pods []corev1.Pod, obs map[string]observation, problems map[string]*podProblem) {
	sort.Slice(pods, func(i, j int) bool { return pods[i].Name < pods[j].Name })
	st := &p.Status
	st.Replicas = nil
	st.ReadyReplicas, st.Uploaded, st.Pending, st.Failed, st.LastUploadTime = 0, 0, 0, 0, nil
	var unreachable, promDown, uploadErrs, disabled []string
	var podProblems []*podProblem // of pods whose agent does not report, or that fail
	var agentDown []string        // pods without a problem of their own whose agent does not report
	reporting := 0
	for _, pod := range pods {
		if pod.DeletionTimestamp != nil {
			continue
		}
		rs := v1alpha1.ShipperReplicaStatus{Pod: pod.Name}
		o := obs[pod.Name]
		pp := problems[pod.Name]
		agentReports := o.Err == nil && o.Status != nil && o.Status.Sidecar != nil
		if pp != nil && (!pp.starting() || !agentReports) {
			podProblems = append(podProblems, pp)
		}
		switch {
		case pp != nil && !agentReports:
			// The pod's own state says more than the agent (that may not run at all).
			rs.LastError = podProblemDetail(pp, o)
			unreachable = append(unreachable, rs.LastError)
		case o.Err != nil:
			rs.LastError = "agent status: " + o.Err.Error()
			agentDown = append(agentDown, fmt.Sprintf("pod %s: %v", pod.Name, o.Err))
		case o.Status == nil:
			agentDown = append(agentDown, fmt.Sprintf("pod %s: waiting for the first agent status", pod.Name))
		case o.Status.Sidecar == nil:
			agentDown = append(agentDown, fmt.Sprintf("pod %s: agent is not a sidecar (%s)", pod.Name, o.Status.Component))
		default:
			reporting++
			s := o.Status.Sidecar
			rs.Ready = o.Status.Ready && s.PrometheusReachable
			rs.PrometheusReachable = s.PrometheusReachable
			rs.PrometheusVersion = s.PrometheusVersion
			rs.ExternalLabels = s.ExternalLabels
			rs.Uploaded, rs.Pending, rs.Failed = s.Uploaded, s.Pending, s.Failed
			rs.LastUploadedBlock = s.LastUploadedBlock
			if s.LastUploadTime != nil {
				rs.LastUploadTime = &metav1.Time{Time: s.LastUploadTime.UTC().Truncate(time.Second)}
			}
			rs.LastError = truncate(s.LastError, 1024)
			if rs.LastError == "" && pp != nil && !pp.starting() {
				rs.LastError = truncate(pp.Message, 1024)
			}
			if !s.PrometheusReachable {
				promDown = append(promDown, fmt.Sprintf("pod %s: Prometheus at %s is unreachable", pod.Name, s.PrometheusURL))
			}
			if !s.UploadsEnabled {
				disabled = append(disabled, pod.Name)
			} else if s.LastError != "" {
				uploadErrs = append(uploadErrs, fmt.Sprintf("pod %s: %s", pod.Name, s.LastError))
			}
		}
		if rs.Ready {
			st.ReadyReplicas++
		}
		st.Uploaded += rs.Uploaded
		st.Pending += rs.Pending
		st.Failed += rs.Failed
		st.LastUploadTime = maxTime(st.LastUploadTime, rs.LastUploadTime)
		st.Replicas = append(st.Replicas, rs)
	}
	unreachable = append(unreachable, agentDown...)

	want := ptr.Deref(p.Spec.Prometheus.Replicas, 1)
	switch {
	case len(promDown) > 0:
		r.status.setCondition(p, &st.Conditions, condition(v1alpha1.ConditionPrometheusHealthy, metav1.ConditionFalse, ReasonPrometheusDown, strings.Join(promDown, "; ")))
	case len(st.Replicas) == 0 || reporting == 0:
		r.status.setCondition(p, &st.Conditions, condition(v1alpha1.ConditionPrometheusHealthy, metav1.ConditionUnknown, ReasonWaitingForAgents, waitingMessage(len(st.Replicas), unreachable)))
	default:
		r.status.setCondition(p, &st.Conditions, condition(v1alpha1.ConditionPrometheusHealthy, metav1.ConditionTrue, ReasonPrometheusHealthy, fmt.Sprintf("%d agent(s) reach their Prometheus", reporting)))
	}
	switch {
	case len(uploadErrs) > 0:
		r.status.setCondition(p, &st.Conditions, condition(v1alpha1.ConditionShipping, metav1.ConditionFalse, ReasonUploadFailed, strings.Join(uploadErrs, "; ")))
	case len(disabled) > 0:
		r.status.setCondition(p, &st.Conditions, condition(v1alpha1.ConditionShipping, metav1.ConditionFalse, ReasonUploadsDisabled, "uploads are disabled in pod(s) "+strings.Join(disabled, ", ")))
	case reporting == 0:
		r.status.setCondition(p, &st.Conditions, condition(v1alpha1.ConditionShipping, metav1.ConditionUnknown, ReasonWaitingForAgents, waitingMessage(len(st.Replicas), unreachable)))
	default:
		r.status.setCondition(p, &st.Conditions, condition(v1alpha1.ConditionShipping, metav1.ConditionTrue, ReasonShipping, fmt.Sprintf("%d block(s) uploaded, %d pending", st.Uploaded, st.Pending)))
	}
	switch {
	case want == 0:
		r.status.setCondition(p, &st.Conditions, condition(v1alpha1.ConditionReady, metav1.ConditionTrue, ReasonScaledToZero, "replicas is 0"))
	case st.ReadyReplicas >= want:
		r.status.setCondition(p, &st.Conditions, condition(v1alpha1.ConditionReady, metav1.ConditionTrue, ReasonReady, fmt.Sprintf("%d/%d replica(s) ready", st.ReadyReplicas, want)))
	case len(podProblems) > 0:
		reason, msg := summarizeProblems(podProblems, maxProblemsInMessage)
		msg = fmt.Sprintf("%d/%d replica(s) ready: %s", st.ReadyReplicas, want, msg)
		if others := slices.Concat(agentDown, promDown); len(others) > 0 {
			msg += "; " + strings.Join(others, "; ")
		}
		r.status.setCondition(p, &st.Conditions, condition(v1alpha1.ConditionReady, metav1.ConditionFalse, reason, msg))
	default:
		msg := fmt.Sprintf("%d/%d replica(s) ready", st.ReadyReplicas, want)
		if len(unreachable)+len(promDown) > 0 {
			msg += ": " + strings.Join(append(unreachable, promDown...), "; ")
		}
		r.status.setCondition(p, &st.Conditions, condition(v1alpha1.ConditionReady, metav1.ConditionFalse, ReasonNotReady, msg))
	}
}

// maxProblemsInMessage bounds the distinct pod problems a condition lists.
const maxProblemsInMessage = 3

// podProblemDetail is the per-pod detail of a pod problem; a pod that is only
// starting also says what its agent answered, unless it has no address yet.
func podProblemDetail(pp *podProblem, o observation) string {
	if pp.starting() && o.Err != nil && !errors.Is(o.Err, errNoAddress) {
		return truncate(pp.Message+"; agent status: "+o.Err.Error(), 1024)
	}
	return truncate(pp.Message, 1024)
}

func waitingMessage(pods int, unreachable []string) string {
	if pods == 0 {
		return "no pods yet"
	}
	return strings.Join(unreachable, "; ")
}
