package controllers

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/apiutil"
	"sigs.k8s.io/controller-runtime/pkg/controller/controllerutil"
	logf "sigs.k8s.io/controller-runtime/pkg/log"
)

// errRecreating says a child had to be deleted to change an immutable field;
// the next reconcile creates it again.
var errRecreating = errors.New("recreating to change immutable fields")

// errDeleting says a child is still being deleted; it is applied once it is gone.
var errDeleting = errors.New("waiting for the deletion to finish")

// isRequeue says err only means "try again shortly".
func isRequeue(err error) bool { return errors.Is(err, errRecreating) || errors.Is(err, errDeleting) }

// applier writes child objects with server-side apply under FieldOwner.
//
// A server-side apply that changes nothing is still a PATCH request. To make a
// reconcile with nothing to do write nothing, the applier remembers, per
// object, the resourceVersion it last left the object at and the hash of what
// it applied; when the cached object still has that resourceVersion and the
// desired state hashes the same, the apply is skipped. Any change made by
// someone else bumps the resourceVersion, so drift is still corrected.
// (Cluster API's SSA cache works the same way.)
type applier struct {
	client  client.Client
	scheme  *runtime.Scheme
	metrics *metrics

	mu   sync.Mutex
	last map[string]appliedState
}

type appliedState struct {
	resourceVersion string
	hash            string
}

func newApplier(c client.Client, scheme *runtime.Scheme, m *metrics) *applier {
	return &applier{client: c, scheme: scheme, metrics: m, last: map[string]appliedState{}}
}

// applyResult says what an apply did.
type applyResult int

const (
	applyUnchanged applyResult = iota
	applyCreated
	applyUpdated
)

// apply makes obj, controlled by owner, look as rendered. obj holds only the
// fields the operator owns; it is not modified.
func (a *applier) apply(ctx context.Context, owner, obj client.Object) (applyResult, error) {
	obj = obj.DeepCopyObject().(client.Object)
	if err := controllerutil.SetControllerReference(owner, obj, a.scheme); err != nil {
		return applyUnchanged, fmt.Errorf("set owner of %s: %w", obj.GetName(), err)
	}
	gvk, err := apiutil.GVKForObject(obj, a.scheme)
	if err != nil {
		return applyUnchanged, err
	}
	u, err := toApplyObject(obj, gvk)
	if err != nil {
		return applyUnchanged, fmt.Errorf("convert %s %s: %w", gvk.Kind, obj.GetName(), err)
	}
	body, err := json.Marshal(u.Object)
	if err != nil {
		return applyUnchanged, err
	}
	hash := hashBytes(body)
	key := gvk.Kind + "/" + obj.GetNamespace() + "/" + obj.GetName()
	log := logf.FromContext(ctx).WithValues(gvk.Kind, client.ObjectKeyFromObject(obj))

	current, err := a.scheme.New(gvk)
	if err != nil {
		return applyUnchanged, err
	}
	cur := current.(client.Object)
	exists := true
	if err := a.client.Get(ctx, client.ObjectKeyFromObject(obj), cur); err != nil {
		if !apierrors.IsNotFound(err) {
			return applyUnchanged, fmt.Errorf("get %s %s: %w", gvk.Kind, obj.GetName(), err)
		}
		exists = false
	}
	if exists {
		if cur.GetDeletionTimestamp() != nil {
			return applyUnchanged, fmt.Errorf("%s %s: %w", gvk.Kind, obj.GetName(), errDeleting)
		}
		a.mu.Lock()
		last, ok := a.last[key]
		a.mu.Unlock()
		if ok && last.resourceVersion == cur.GetResourceVersion() && last.hash == hash {
			a.metrics.applies.WithLabelValues(gvk.Kind, "skipped").Inc()
			return applyUnchanged, nil
		}
	}

	err = a.client.Apply(ctx, client.ApplyConfigurationFromUnstructured(u), client.FieldOwner(FieldOwner), client.ForceOwnership)
	if err != nil && exists && gvk.Kind == "StatefulSet" && apierrors.IsInvalid(err) {
		// A field that cannot change (volumeClaimTemplates, selector, ...)
		// changed. Delete the StatefulSet but keep its pods and volumes; the
		// next reconcile creates it again and adopts them.
		log.Info("deleting StatefulSet to change immutable fields; pods and volumes are kept", "reason", err.Error())
		orphan := metav1.DeletePropagationOrphan
		if derr := a.client.Delete(ctx, cur, &client.DeleteOptions{PropagationPolicy: &orphan}); derr != nil && !apierrors.IsNotFound(derr) {
			return applyUnchanged, fmt.Errorf("delete %s %s to recreate it: %w", gvk.Kind, obj.GetName(), derr)
		}
		a.metrics.applies.WithLabelValues(gvk.Kind, "recreated").Inc()
		return applyUpdated, fmt.Errorf("%s %s: %w", gvk.Kind, obj.GetName(), errRecreating)
	}
	if err != nil {
		a.metrics.applies.WithLabelValues(gvk.Kind, "error").Inc()
		return applyUnchanged, fmt.Errorf("apply %s %s: %w", gvk.Kind, obj.GetName(), err)
	}
	a.mu.Lock()
	a.last[key] = appliedState{resourceVersion: u.GetResourceVersion(), hash: hash}
	a.mu.Unlock()
	switch {
	case !exists:
		a.metrics.applies.WithLabelValues(gvk.Kind, "created").Inc()
		log.V(1).Info("created")
		return applyCreated, nil
	case u.GetResourceVersion() != cur.GetResourceVersion():
		a.metrics.applies.WithLabelValues(gvk.Kind, "updated").Inc()
		log.V(1).Info("updated")
		return applyUpdated, nil
	default:
		a.metrics.applies.WithLabelValues(gvk.Kind, "unchanged").Inc()
		return applyUnchanged, nil
	}
}

// forget drops what the applier remembers about an object it deleted.
func (a *applier) forget(kind, namespace, name string) {
	a.mu.Lock()
	delete(a.last, kind+"/"+namespace+"/"+name)
	a.mu.Unlock()
}

// toApplyObject turns a typed object into the body of an apply request: the
// fields the typed struct always serializes but the operator does not mean to
// own (status, null creationTimestamps) are dropped.
func toApplyObject(obj client.Object, gvk schema.GroupVersionKind) (*unstructured.Unstructured, error) {
	m, err := runtime.DefaultUnstructuredConverter.ToUnstructured(obj)
	if err != nil {
		return nil, err
	}
	delete(m, "status")
	if spec, ok := m["spec"].(map[string]any); ok {
		if vcts, ok := spec["volumeClaimTemplates"].([]any); ok {
			for _, v := range vcts {
				if vm, ok := v.(map[string]any); ok {
					delete(vm, "status")
				}
			}
		}
	}
	pruneNulls(m)
	u := &unstructured.Unstructured{Object: m}
	u.SetGroupVersionKind(gvk)
	return u, nil
}

func pruneNulls(v any) {
	switch t := v.(type) {
	case map[string]any:
		for k, e := range t {
			if e == nil {
				delete(t, k)
				continue
			}
			pruneNulls(e)
		}
	case []any:
		for _, e := range t {
			pruneNulls(e)
		}
	}
}
