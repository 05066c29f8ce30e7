package controllers

import (
	"context"
	"fmt"
	"slices"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

const storeYAML = `apiVersion: v1
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
kind: StoreGateway
metadata: {name: store}
spec:
  bucketRef: {name: metrics}
  shards: %d
%s`

// TestStoreGatewayChanges: removing shards deletes their StatefulSets, and a
// change to an immutable StatefulSet field (the index-header volume) deletes
// the StatefulSet with orphan propagation, keeping the pods, and creates it
// again. envtest has no garbage collector, so the test removes the orphan
// finalizer itself, as the garbage collector would after orphaning the pods.
func TestStoreGatewayChanges(t *testing.T) {
	requireEnv(t)
	ns := newNamespace(t)
	ctx := context.Background()
	mustKubectl(t, []byte(fmt.Sprintf(storeYAML, 3, "")), "apply", "-n", ns, "-f", "-")
	shards := func() ([]string, error) {
		var list appsv1.StatefulSetList
		if err := k8s.List(ctx, &list, client.InNamespace(ns)); err != nil {
			return nil, err
		}
		var names []string
		for _, s := range list.Items {
			if s.DeletionTimestamp == nil {
				names = append(names, s.Name)
			}
		}
		slices.Sort(names)
		return names, nil
	}
	want := func(names ...string) func() error {
		return func() error {
			got, err := shards()
			if err != nil {
				return err
			}
			if !slices.Equal(got, names) {
				return fmt.Errorf("StatefulSets %v, want %v", got, names)
			}
			return nil
		}
	}
	eventually(t, 30*time.Second, "three shards", want("store-shard-0", "store-shard-1", "store-shard-2"))

	mustKubectl(t, []byte(fmt.Sprintf(storeYAML, 1, "")), "apply", "-n", ns, "-f", "-")
	eventually(t, 30*time.Second, "one shard", want("store-shard-0"))
	waitEvent(t, ns, "store", EventDeleted)

	// Persistent index-headers: volumeClaimTemplates cannot change in place.
	mustKubectl(t, []byte(fmt.Sprintf(storeYAML, 1, `  indexHeader:
    storage:
      volumeClaimTemplate:
        accessModes: [ReadWriteOnce]
        resources: {requests: {storage: 1Gi}}
`)), "apply", "-n", ns, "-f", "-")
	var old appsv1.StatefulSet
	eventually(t, 30*time.Second, "StatefulSet deleted with orphan propagation", func() error {
		if err := k8s.Get(ctx, client.ObjectKey{Namespace: ns, Name: "store-shard-0"}, &old); err != nil {
			return err
		}
		if old.DeletionTimestamp == nil || !slices.Contains(old.Finalizers, metav1.FinalizerOrphanDependents) {
			return fmt.Errorf("not being deleted with orphan propagation: %v %v", old.DeletionTimestamp, old.Finalizers)
		}
		return nil
	})
	waitEvent(t, ns, "store", EventRecreating)
	old.Finalizers = nil
	if err := k8s.Update(ctx, &old); err != nil && !apierrors.IsNotFound(err) {
		t.Fatal(err)
	}
	eventually(t, 30*time.Second, "StatefulSet recreated with the volume", func() error {
		var sts appsv1.StatefulSet
		if err := k8s.Get(ctx, client.ObjectKey{Namespace: ns, Name: "store-shard-0"}, &sts); err != nil {
			return err
		}
		if sts.UID == old.UID || len(sts.Spec.VolumeClaimTemplates) != 1 {
			return fmt.Errorf("not recreated yet (uid %s, %d claims)", sts.UID, len(sts.Spec.VolumeClaimTemplates))
		}
		return nil
	})
}
