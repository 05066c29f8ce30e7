package controllers

import (
	"context"
	"encoding/json"
	"fmt"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/tools/events"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

// Condition reasons, stable so that alerts and scripts can match them.
const (
	ReasonReady             = "Ready"
	ReasonNotReady          = "NotReady"
	ReasonReachable         = "ProbeSucceeded"
	ReasonUnreachable       = "ProbeFailed"
	ReasonProbing           = "Probing"
	ReasonNotProbed         = "NotProbed"
	ReasonInvalidConfig     = "InvalidConfig"
	ReasonSecretNotFound    = "SecretNotFound"
	ReasonConfigMapNotFound = "ConfigMapNotFound"
	ReasonBucketNotFound    = "BucketNotFound"
	ReasonBucketNotReady    = "BucketNotReady"
	ReasonApplyFailed       = "ApplyFailed"
	ReasonWaitingForAgents  = "WaitingForAgents"
	ReasonAgentUnreachable  = "AgentUnreachable"
	ReasonSynced            = "Synced"
	ReasonSyncFailed        = "SyncFailed"
	ReasonInitialSync       = "InitialSyncInProgress"
	ReasonShipping          = "Shipping"
	ReasonUploadFailed      = "UploadFailed"
	ReasonUploadsDisabled   = "UploadsDisabled"
	ReasonPrometheusHealthy = "PrometheusReachable"
	ReasonPrometheusDown    = "PrometheusUnreachable"
	ReasonScaledToZero      = "ScaledToZero"
)

// Event reasons for children (conditions emit events under their own reasons).
const (
	EventCreated    = "SuccessfulCreate"
	EventUpdated    = "SuccessfulUpdate"
	EventDeleted    = "SuccessfulDelete"
	EventFailed     = "FailedApply"
	EventRecreating = "RecreatingStatefulSet"
)

// statusWriter sets conditions, emits an Event when one changes, keeps the
// condition gauge current and patches the status subresource when it changed.
type statusWriter struct {
	client   client.Client
	recorder events.EventRecorder
	metrics  *metrics
	kind     string
}

// setCondition sets c on obj's conditions (with obj's generation) and emits an
// Event when its status or reason changed. Unknown conditions set for the
// first time emit nothing: they only say that nothing is known yet.
func (w *statusWriter) setCondition(obj client.Object, conds *[]metav1.Condition, c metav1.Condition) {
	c.ObservedGeneration = obj.GetGeneration()
	prev := meta.FindStatusCondition(*conds, c.Type)
	changed := prev == nil || prev.Status != c.Status || prev.Reason != c.Reason
	meta.SetStatusCondition(conds, c)
	if !changed || (prev == nil && c.Status == metav1.ConditionUnknown) {
		return
	}
	eventType := corev1.EventTypeNormal
	if c.Status == metav1.ConditionFalse {
		eventType = corev1.EventTypeWarning
	}
	w.recorder.Eventf(obj, nil, eventType, c.Reason, "Set"+c.Type, "%s is %s: %s", c.Type, c.Status, truncate(c.Message, 900))
}

// event records a Normal or Warning event about obj.
func (w *statusWriter) event(obj client.Object, warning bool, reason, action, format string, args ...any) {
	t := corev1.EventTypeNormal
	if warning {
		t = corev1.EventTypeWarning
	}
	w.recorder.Eventf(obj, nil, t, reason, action, format, args...)
}

// patch writes the status of obj if it differs from the one of orig. The
// whole status is replaced (a JSON patch "add /status"): a merge patch
// computed from Go structs would leave out fields that stay at their zero
// value, e.g. pending: 0, and printer columns would show nothing for them.
func (w *statusWriter) patch(ctx context.Context, obj client.Object, origStatus, status any, conds []metav1.Condition) error {
	w.recordConditions(obj, conds)
	if equality.Semantic.DeepEqual(origStatus, status) {
		return nil
	}
	body, err := json.Marshal([]map[string]any{{"op": "add", "path": "/status", "value": status}})
	if err != nil {
		return fmt.Errorf("marshal status: %w", err)
	}
	if err := w.client.Status().Patch(ctx, obj, client.RawPatch(types.JSONPatchType, body)); err != nil {
		return fmt.Errorf("patch status: %w", err)
	}
	return nil
}

func (w *statusWriter) recordConditions(obj client.Object, conds []metav1.Condition) {
	for _, c := range conds {
		for _, s := range []metav1.ConditionStatus{metav1.ConditionTrue, metav1.ConditionFalse, metav1.ConditionUnknown} {
			v := 0.0
			if c.Status == s {
				v = 1
			}
			w.metrics.conditions.WithLabelValues(w.kind, obj.GetNamespace(), obj.GetName(), c.Type, string(s)).Set(v)
		}
	}
}

// forget drops the condition series of a deleted resource.
func (w *statusWriter) forget(namespace, name string) {
	w.metrics.conditions.DeletePartialMatch(map[string]string{"kind": w.kind, "namespace": namespace, "name": name})
}

func condition(t string, status metav1.ConditionStatus, reason, message string) metav1.Condition {
	return metav1.Condition{Type: t, Status: status, Reason: reason, Message: truncate(message, 4096)}
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n-3] + "..."
}
