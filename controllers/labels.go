package controllers

import (
	"fmt"
	"maps"
)

// Names shared by everything the operator renders.
const (
	// FieldOwner is the server-side apply field manager of every child object.
	FieldOwner = "stevedore-operator"

	// AnnotationConfigHash on a pod template is the hash of every Secret and
	// ConfigMap the pods consume; it changes when one of them does, rolling the pods.
	AnnotationConfigHash = "stevedore.dev/config-hash"

	// LabelShard holds the 0-based shard index of a store gateway pod.
	LabelShard = "stevedore.dev/shard"
	// LabelStoreAPI marks Services and pods serving the Thanos StoreAPI, as
	// kube-thanos does, so a querier's service discovery can select them.
	LabelStoreAPI = "thanos-store-api"

	labelName      = "app.kubernetes.io/name"
	labelInstance  = "app.kubernetes.io/instance"
	labelComponent = "app.kubernetes.io/component"
	labelManagedBy = "app.kubernetes.io/managed-by"
	labelPartOf    = "app.kubernetes.io/part-of"

	managedBy = "stevedore-operator"

	// Components.
	componentBucket  = "bucket"
	componentShipper = "prometheus"
	componentStore   = "store-gateway"

	// Agent ports, as Thanos uses them.
	portGRPC       = 10901
	portHTTP       = 10902
	portPrometheus = 9090

	// objstoreKey is the key of the rendered objstore config in the Bucket's Secret.
	objstoreKey = "objstore.yaml"
	// objstoreMountPath is where workloads mount the Bucket's Secret.
	objstoreMountPath = "/etc/stevedore/objstore"
)

// selectorLabels select the pods of one instance of a component.
func selectorLabels(component, instance string) map[string]string {
	return map[string]string{
		labelName:      "stevedore",
		labelInstance:  instance,
		labelComponent: component,
	}
}

// commonLabels are set on every object the operator renders.
func commonLabels(component, instance string) map[string]string {
	l := selectorLabels(component, instance)
	l[labelManagedBy] = managedBy
	l[labelPartOf] = "stevedore"
	return l
}

// withLabels returns a copy of base with extra merged in.
func withLabels(base map[string]string, extra map[string]string) map[string]string {
	out := maps.Clone(base)
	maps.Copy(out, extra)
	return out
}

// objstoreSecretName is the Secret a Bucket renders its objstore config into.
func objstoreSecretName(bucket string) string { return bucket + "-objstore" }

// shardName is the StatefulSet of shard k of a StoreGateway.
func shardName(gateway string, shard int32) string { return fmt.Sprintf("%s-shard-%d", gateway, shard) }
