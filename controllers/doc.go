// Package controllers holds one reconciler per Stevedore kind and the helpers
// they share for rendering workloads and reporting status.
package controllers

// +kubebuilder:rbac:groups=monitoring.stevedore.dev,resources=buckets;prometheusshippers;storegateways,verbs=get;list;watch;update;patch
// +kubebuilder:rbac:groups=monitoring.stevedore.dev,resources=buckets/status;prometheusshippers/status;storegateways/status,verbs=get;update;patch
// +kubebuilder:rbac:groups=monitoring.stevedore.dev,resources=buckets/finalizers;prometheusshippers/finalizers;storegateways/finalizers,verbs=update
// +kubebuilder:rbac:groups="",resources=events,verbs=create;patch
// +kubebuilder:rbac:groups=coordination.k8s.io,resources=leases,verbs=get;list;watch;create;update;patch;delete
