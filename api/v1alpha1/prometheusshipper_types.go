package v1alpha1

import (
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// PrometheusShipperSpec describes a Prometheus whose blocks are shipped to a Bucket.
type PrometheusShipperSpec struct {
	// BucketRef names the Bucket blocks are uploaded to.
	BucketRef BucketReference `json:"bucketRef"`

	// Prometheus is the managed Prometheus.
	Prometheus ManagedPrometheus `json:"prometheus"`

	// Shipper options of the agent sidecar.
	// +optional
	Shipper ShipperOptions `json:"shipper,omitempty"`

	// Agent is the Stevedore agent sidecar container.
	// +optional
	Agent AgentSpec `json:"agent,omitempty"`

	// Pod settings shared by the Prometheus pods.
	// +optional
	Pod PodSettings `json:"pod,omitempty"`
}

// ManagedPrometheus configures the Prometheus the operator runs.
// +kubebuilder:validation:XValidation:rule="!has(self.replicaLabel) || !(self.replicaLabel in self.externalLabels)",message="externalLabels must not contain the replicaLabel: the operator sets it to the pod name"
type ManagedPrometheus struct {
	// Image of Prometheus.
	// +kubebuilder:default="quay.io/prometheus/prometheus:v3.15.0"
	// +optional
	Image string `json:"image,omitempty"`
	// ImagePullPolicy of the Prometheus container.
	// +optional
	ImagePullPolicy corev1.PullPolicy `json:"imagePullPolicy,omitempty"`
	// Replicas of Prometheus; each one ships its own blocks, told apart by the replica label.
	// +kubebuilder:default=1
	// +kubebuilder:validation:Minimum=0
	// +optional
	Replicas *int32 `json:"replicas,omitempty"`
	// Retention of local data. Blocks stay in the bucket after they leave Prometheus.
	// +kubebuilder:default="24h"
	// +kubebuilder:validation:Pattern=`^([0-9]+(ms|s|m|h|d|w|y))+$`
	// +optional
	Retention string `json:"retention,omitempty"`
	// ExternalLabels identify this Prometheus in the bucket and in query results.
	// +kubebuilder:validation:MinProperties=1
	// +kubebuilder:validation:XValidation:rule="self.all(k, k.matches('^[a-zA-Z_][a-zA-Z0-9_]*$') && !k.startsWith('__'))",message="external label names must match [a-zA-Z_][a-zA-Z0-9_]* and must not start with __"
	// +kubebuilder:validation:XValidation:rule="self.all(k, self[k] != '')",message="external label values must not be empty"
	ExternalLabels map[string]string `json:"externalLabels"`
	// ReplicaLabel is the external label added with the pod name, so replicas' blocks stay apart
	// and a querier can deduplicate them.
	// +kubebuilder:default=prometheus_replica
	// +kubebuilder:validation:Pattern=`^[a-zA-Z_][a-zA-Z0-9_]*$`
	// +optional
	ReplicaLabel string `json:"replicaLabel,omitempty"`
	// BlockDuration is Prometheus's min and max block duration (they must be
	// equal while shipping). Keep the default of 2h outside tests.
	// +kubebuilder:default="2h"
	// +kubebuilder:validation:XValidation:rule="duration(self) >= duration('1m')",message="blockDuration must be at least 1m"
	// +optional
	BlockDuration *metav1.Duration `json:"blockDuration,omitempty"`
	// ScrapeConfig is the Prometheus configuration (scrape_configs, rule_files, ...).
	// Its global section may set scrape settings; global.external_labels is
	// set by the operator from externalLabels and replicaLabel.
	// +optional
	ScrapeConfig *ScrapeConfigSource `json:"scrapeConfig,omitempty"`
	// Storage for the TSDB. Without it an emptyDir is used and data is lost with the pod.
	// +optional
	Storage *StorageSpec `json:"storage,omitempty"`
	// Resources of the Prometheus container.
	// +optional
	Resources corev1.ResourceRequirements `json:"resources,omitempty"`
}

// ScrapeConfigSource gives the Prometheus configuration inline or from a ConfigMap.
// +kubebuilder:validation:XValidation:rule="has(self.inline) != has(self.configMapRef)",message="set exactly one of inline or configMapRef"
type ScrapeConfigSource struct {
	// Inline Prometheus configuration (scrape_configs, rule_files, ...).
	// +optional
	Inline string `json:"inline,omitempty"`
	// ConfigMapRef references a ConfigMap key holding the configuration.
	// +optional
	ConfigMapRef *corev1.ConfigMapKeySelector `json:"configMapRef,omitempty"`
}

// StorageSpec is a persistent volume for each pod.
type StorageSpec struct {
	// VolumeClaimTemplate of the StatefulSet.
	VolumeClaimTemplate corev1.PersistentVolumeClaimSpec `json:"volumeClaimTemplate"`
}

// HashFunc names the hash recorded for each uploaded file in meta.json.
// +kubebuilder:validation:Enum="";SHA256
type HashFunc string

// ShipperOptions configure block uploads.
type ShipperOptions struct {
	// UploadCompacted also uploads blocks of compaction level > 1, e.g. when
	// migrating an existing Prometheus.
	// +optional
	UploadCompacted bool `json:"uploadCompacted,omitempty"`
	// MinTime: blocks older than this are neither uploaded nor served.
	// RFC3339 or relative to now (e.g. -2w).
	// +kubebuilder:validation:Pattern=`^(-?[0-9]+(ms|s|m|h|d|w|y))+$|^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}(\.[0-9]+)?(Z|[+-][0-9]{2}:[0-9]{2})$`
	// +optional
	MinTime string `json:"minTime,omitempty"`
	// HashFunc records file hashes in meta.json.
	// +optional
	HashFunc HashFunc `json:"hashFunc,omitempty"`
}

// ShipperReplicaStatus is the state of one Prometheus replica and its sidecar.
type ShipperReplicaStatus struct {
	// Pod name.
	Pod string `json:"pod"`
	// Ready is true when Prometheus and the agent are ready.
	Ready bool `json:"ready"`
	// PrometheusReachable is true when the agent reaches Prometheus.
	PrometheusReachable bool `json:"prometheusReachable"`
	// PrometheusVersion reported by Prometheus.
	// +optional
	PrometheusVersion string `json:"prometheusVersion,omitempty"`
	// ExternalLabels Prometheus reports.
	// +optional
	ExternalLabels map[string]string `json:"externalLabels,omitempty"`
	// Uploaded blocks.
	Uploaded int64 `json:"uploaded"`
	// Pending blocks waiting for upload.
	Pending int64 `json:"pending"`
	// Failed uploads since the agent started.
	Failed int64 `json:"failed"`
	// LastUploadedBlock is the ULID of the last uploaded block.
	// +optional
	LastUploadedBlock string `json:"lastUploadedBlock,omitempty"`
	// LastUploadTime of a successful upload.
	// +optional
	LastUploadTime *metav1.Time `json:"lastUploadTime,omitempty"`
	// LastError of the agent, if any.
	// +optional
	LastError string `json:"lastError,omitempty"`
}

// PrometheusShipperStatus is the observed state of a PrometheusShipper.
type PrometheusShipperStatus struct {
	// ObservedGeneration is the generation the status describes.
	// +optional
	ObservedGeneration int64 `json:"observedGeneration,omitempty"`
	// Conditions: Ready, PrometheusHealthy, Shipping.
	// +listType=map
	// +listMapKey=type
	// +optional
	Conditions []metav1.Condition `json:"conditions,omitempty"`
	// ReadyReplicas out of Replicas.
	// +optional
	ReadyReplicas int32 `json:"readyReplicas"`
	// Replicas: one entry per pod.
	// +optional
	Replicas []ShipperReplicaStatus `json:"replicas,omitempty"`
	// Uploaded blocks over all replicas.
	// +optional
	Uploaded int64 `json:"uploaded"`
	// Pending blocks over all replicas.
	// +optional
	Pending int64 `json:"pending"`
	// Failed uploads over all replicas since their agents started.
	// +optional
	Failed int64 `json:"failed"`
	// LastUploadTime over all replicas.
	// +optional
	LastUploadTime *metav1.Time `json:"lastUploadTime,omitempty"`
}

// PrometheusShipper is a Prometheus whose TSDB blocks are shipped to a Bucket
// and served over the Thanos StoreAPI by a Stevedore agent sidecar.
// +kubebuilder:object:root=true
// +kubebuilder:subresource:status
// +kubebuilder:resource:shortName=psh,categories=stevedore
// +kubebuilder:printcolumn:name="Ready",type=string,JSONPath=`.status.conditions[?(@.type=="Ready")].status`
// +kubebuilder:printcolumn:name="Uploaded",type=integer,JSONPath=`.status.uploaded`
// +kubebuilder:printcolumn:name="Pending",type=integer,JSONPath=`.status.pending`
// +kubebuilder:printcolumn:name="Last Upload",type=date,JSONPath=`.status.lastUploadTime`
// +kubebuilder:printcolumn:name="Age",type=date,JSONPath=`.metadata.creationTimestamp`
type PrometheusShipper struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`

	Spec   PrometheusShipperSpec   `json:"spec,omitempty"`
	Status PrometheusShipperStatus `json:"status,omitempty"`
}

// PrometheusShipperList contains a list of PrometheusShipper.
// +kubebuilder:object:root=true
type PrometheusShipperList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []PrometheusShipper `json:"items"`
}

func init() {
	SchemeBuilder.Register(&PrometheusShipper{}, &PrometheusShipperList{})
}
