// Package controllers holds one reconciler per Stevedore kind and the helpers
// they share for rendering workloads and reporting status.
//
// RBAC markers sit next to the reconciler that needs them; the ones here are
// for the manager itself (leader election, events through the core API when
// events.k8s.io is unavailable).
package controllers

// +kubebuilder:rbac:groups="",resources=events,verbs=create;patch
// +kubebuilder:rbac:groups=coordination.k8s.io,resources=leases,verbs=get;list;watch;create;update;patch;delete
