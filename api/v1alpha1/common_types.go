package v1alpha1

import (
	corev1 "k8s.io/api/core/v1"
)

// Condition types shared by the kinds of this group.
const (
	// ConditionReady is True when the resource does what it is for.
	ConditionReady = "Ready"
	// ConditionReachable is True when a Bucket answered the last probe.
	ConditionReachable = "Reachable"
	// ConditionPrometheusHealthy is True when every shipper replica reaches its Prometheus.
	ConditionPrometheusHealthy = "PrometheusHealthy"
	// ConditionShipping is True when blocks are being uploaded without errors.
	ConditionShipping = "Shipping"
	// ConditionSynced is True when every store gateway shard has synced the bucket.
	ConditionSynced = "Synced"
)

// BucketReference names a Bucket in the same namespace.
type BucketReference struct {
	// Name of the Bucket.
	// +kubebuilder:validation:MinLength=1
	Name string `json:"name"`
}

// AgentSpec configures the Stevedore agent container.
type AgentSpec struct {
	// Image of the Stevedore agent. Defaults to the image the operator was built with.
	// +optional
	Image string `json:"image,omitempty"`
	// ImagePullPolicy of the agent container.
	// +optional
	ImagePullPolicy corev1.PullPolicy `json:"imagePullPolicy,omitempty"`
	// Resources of the agent container.
	// +optional
	Resources corev1.ResourceRequirements `json:"resources,omitempty"`
	// LogLevel of the agent.
	// +kubebuilder:validation:Enum=debug;info;warn;error
	// +kubebuilder:default=info
	// +optional
	LogLevel string `json:"logLevel,omitempty"`
}

// PodSettings are the pod-level settings users commonly need, e.g. for cloud
// identity (IRSA, Workload Identity) through a service account and annotations.
type PodSettings struct {
	// ServiceAccountName the pods run as.
	// +optional
	ServiceAccountName string `json:"serviceAccountName,omitempty"`
	// Annotations added to the pods.
	// +optional
	Annotations map[string]string `json:"annotations,omitempty"`
	// NodeSelector of the pods.
	// +optional
	NodeSelector map[string]string `json:"nodeSelector,omitempty"`
	// Tolerations of the pods.
	// +optional
	Tolerations []corev1.Toleration `json:"tolerations,omitempty"`
	// Affinity of the pods.
	// +optional
	Affinity *corev1.Affinity `json:"affinity,omitempty"`
}
