// Package v1alpha1 contains the API types of the monitoring.stevedore.dev group:
// Bucket, PrometheusShipper and StoreGateway.
// +kubebuilder:object:generate=true
// +groupName=monitoring.stevedore.dev
package v1alpha1

import (
	"k8s.io/apimachinery/pkg/runtime/schema"
	"sigs.k8s.io/controller-runtime/pkg/scheme"
)

var (
	// GroupVersion is the group version used to register these objects.
	GroupVersion = schema.GroupVersion{Group: "monitoring.stevedore.dev", Version: "v1alpha1"}

	// SchemeBuilder is used to add go types to the GroupVersionKind scheme.
	// The kubebuilder builder keeps registration next to each type (init in
	// *_types.go); the deprecation asks api packages to avoid controller-runtime,
	// a dependency this module has anyway.
	SchemeBuilder = &scheme.Builder{GroupVersion: GroupVersion} //nolint:staticcheck

	// AddToScheme adds the types in this group-version to the given scheme.
	AddToScheme = SchemeBuilder.AddToScheme
)
