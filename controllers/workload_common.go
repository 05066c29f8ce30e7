package controllers

import (
	"context"
	"fmt"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	"github.com/stevedore-dev/stevedore/api/v1alpha1"
)

// indexBucketRef indexes StoreGateways and PrometheusShippers by the Bucket they use.
const indexBucketRef = "spec.bucketRef.name"

// loadBucket reads the Bucket a workload uses and the Secret it rendered. A
// *configError says the Bucket is missing or not rendered yet; the Bucket
// watch reconciles the workload again when that changes.
func loadBucket(ctx context.Context, c client.Reader, namespace, name string) (*bucketInputs, error) {
	var b v1alpha1.Bucket
	if err := c.Get(ctx, client.ObjectKey{Namespace: namespace, Name: name}, &b); err != nil {
		if apierrors.IsNotFound(err) {
			return nil, &configError{ReasonBucketNotFound, fmt.Sprintf("Bucket %s/%s not found", namespace, name)}
		}
		return nil, fmt.Errorf("get Bucket %s: %w", name, err)
	}
	if b.Status.ConfigSecretName == "" {
		msg := fmt.Sprintf("Bucket %s has not rendered its objstore config yet", name)
		if c := meta.FindStatusCondition(b.Status.Conditions, v1alpha1.ConditionReady); c != nil && c.Message != "" {
			msg += ": " + c.Message
		}
		return nil, &configError{ReasonBucketNotReady, msg}
	}
	var sec corev1.Secret
	if err := c.Get(ctx, client.ObjectKey{Namespace: namespace, Name: b.Status.ConfigSecretName}, &sec); err != nil {
		if apierrors.IsNotFound(err) {
			return nil, &configError{ReasonBucketNotReady, fmt.Sprintf("Secret %s of Bucket %s not found", b.Status.ConfigSecretName, name)}
		}
		return nil, fmt.Errorf("get Secret %s: %w", b.Status.ConfigSecretName, err)
	}
	if _, ok := sec.Data[objstoreKey]; !ok {
		return nil, &configError{ReasonBucketNotReady, fmt.Sprintf("Secret %s of Bucket %s has no %s", sec.Name, name, objstoreKey)}
	}
	return &bucketInputs{SecretName: sec.Name, Data: sec.Data}, nil
}

// listPods lists the pods of one instance of a component.
func listPods(ctx context.Context, c client.Reader, namespace, component, instance string) ([]corev1.Pod, error) {
	var pods corev1.PodList
	if err := c.List(ctx, &pods, client.InNamespace(namespace), client.MatchingLabels(selectorLabels(component, instance))); err != nil {
		return nil, fmt.Errorf("list pods: %w", err)
	}
	return pods.Items, nil
}

// requestsForPod maps a pod to the resource it belongs to, from its labels.
func requestsForPod(component string) func(context.Context, client.Object) []reconcile.Request {
	return func(_ context.Context, o client.Object) []reconcile.Request {
		l := o.GetLabels()
		if l[labelName] != "stevedore" || l[labelComponent] != component || l[labelInstance] == "" {
			return nil
		}
		return []reconcile.Request{{NamespacedName: types.NamespacedName{Namespace: o.GetNamespace(), Name: l[labelInstance]}}}
	}
}

// requestsFromIndex lists the objects of list whose field index matches o's name.
func requestsFromIndex(c client.Reader, list client.ObjectList, index string) func(context.Context, client.Object) []reconcile.Request {
	return func(ctx context.Context, o client.Object) []reconcile.Request {
		l := list.DeepCopyObject().(client.ObjectList)
		if err := c.List(ctx, l, client.InNamespace(o.GetNamespace()), client.MatchingFields{index: o.GetName()}); err != nil {
			return nil
		}
		items, err := meta.ExtractList(l)
		if err != nil {
			return nil
		}
		reqs := make([]reconcile.Request, 0, len(items))
		for _, it := range items {
			obj := it.(client.Object)
			reqs = append(reqs, reconcile.Request{NamespacedName: client.ObjectKeyFromObject(obj)})
		}
		return reqs
	}
}
