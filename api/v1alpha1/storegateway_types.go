package v1alpha1

import (
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// StoreGatewaySpec describes a sharded set of store gateways serving a Bucket.
type StoreGatewaySpec struct {
	// BucketRef names the Bucket whose blocks are served.
	BucketRef BucketReference `json:"bucketRef"`

	// Shards split the blocks by hashmod of the block ID; each shard is one StatefulSet.
	// +kubebuilder:default=1
	// +kubebuilder:validation:Minimum=1
	// +kubebuilder:validation:Maximum=64
	// +optional
	Shards int32 `json:"shards,omitempty"`

	// ReplicasPerShard serve the same blocks for availability.
	// +kubebuilder:default=1
	// +kubebuilder:validation:Minimum=1
	// +optional
	ReplicasPerShard int32 `json:"replicasPerShard,omitempty"`

	// TimeRange limits the blocks served to those overlapping it.
	// +optional
	TimeRange *TimeRange `json:"timeRange,omitempty"`

	// IndexCache caches postings and series.
	// +optional
	IndexCache *CacheSpec `json:"indexCache,omitempty"`

	// CachingBucket caches chunk ranges and object metadata fetched from the bucket.
	// +optional
	CachingBucket *CacheSpec `json:"cachingBucket,omitempty"`

	// ChunkDiskCache keeps chunk data that queries read on the gateway's local
	// disk (the index-header volume), so that repeated heavy queries do not
	// fetch it from the bucket again. Without it the agent's default applies:
	// 4Gi. Size the volume (indexHeader.storage) for it.
	// +optional
	ChunkDiskCache *ChunkDiskCacheSpec `json:"chunkDiskCache,omitempty"`

	// Limits protect the gateways from queries that are too large.
	// +optional
	Limits StoreLimits `json:"limits,omitempty"`

	// SyncInterval between bucket syncs.
	// +kubebuilder:default="3m"
	// +optional
	SyncInterval *metav1.Duration `json:"syncInterval,omitempty"`

	// IndexHeader configures the local index-header files.
	// +optional
	IndexHeader IndexHeaderSpec `json:"indexHeader,omitempty"`

	// Agent is the Stevedore agent container.
	// +optional
	Agent AgentSpec `json:"agent,omitempty"`

	// Pod settings of the gateway pods.
	// +optional
	Pod PodSettings `json:"pod,omitempty"`
}

// TimeRange is a time window, each bound RFC3339 or relative to now (e.g. -2w, -36h).
// +kubebuilder:validation:XValidation:rule="!has(self.minTime) || !has(self.maxTime) || !self.minTime.matches('^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}([.][0-9]+)?(Z|[+-][0-9]{2}:[0-9]{2})$') || !self.maxTime.matches('^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}([.][0-9]+)?(Z|[+-][0-9]{2}:[0-9]{2})$') || timestamp(self.minTime) < timestamp(self.maxTime)",message="timeRange.minTime must be before timeRange.maxTime"
// +kubebuilder:validation:XValidation:rule="!has(self.minTime) || !self.minTime.matches('^[0-9]{4}-') || self.minTime.matches('^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}([.][0-9]+)?(Z|[+-][0-9]{2}:[0-9]{2})$')",message="timeRange.minTime must be RFC3339 (2006-01-02T15:04:05Z) or relative (-2w)"
// +kubebuilder:validation:XValidation:rule="!has(self.maxTime) || !self.maxTime.matches('^[0-9]{4}-') || self.maxTime.matches('^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}([.][0-9]+)?(Z|[+-][0-9]{2}:[0-9]{2})$')",message="timeRange.maxTime must be RFC3339 (2006-01-02T15:04:05Z) or relative (-2w)"
type TimeRange struct {
	// MinTime: blocks that end before it are not served.
	// +kubebuilder:validation:Pattern=`^(-?[0-9]+(ms|s|m|h|d|w|y))+$|^[0-9]{4}-[0-9]{2}-[0-9]{2}T.*$`
	// +kubebuilder:validation:MaxLength=64
	// +optional
	MinTime string `json:"minTime,omitempty"`
	// MaxTime: blocks that start after it are not served.
	// +kubebuilder:validation:Pattern=`^(-?[0-9]+(ms|s|m|h|d|w|y))+$|^[0-9]{4}-[0-9]{2}-[0-9]{2}T.*$`
	// +kubebuilder:validation:MaxLength=64
	// +optional
	MaxTime string `json:"maxTime,omitempty"`
}

// CacheSpec selects an in-memory or a memcached cache.
// +kubebuilder:validation:XValidation:rule="has(self.inMemory) != has(self.memcached)",message="set exactly one of inMemory or memcached"
type CacheSpec struct {
	// InMemory cache inside each pod.
	// +optional
	InMemory *InMemoryCache `json:"inMemory,omitempty"`
	// Memcached servers shared by all pods.
	// +optional
	Memcached *MemcachedCache `json:"memcached,omitempty"`
}

// InMemoryCache is an LRU cache bounded in bytes.
type InMemoryCache struct {
	// MaxSize of the cache.
	// +kubebuilder:default="256Mi"
	// +optional
	MaxSize *resource.Quantity `json:"maxSize,omitempty"`
}

// MemcachedCache points at memcached servers.
type MemcachedCache struct {
	// Addresses host:port, or dns+/dnssrv+ prefixed names as Thanos accepts.
	// +kubebuilder:validation:MinItems=1
	// +kubebuilder:validation:items:MinLength=1
	Addresses []string `json:"addresses"`
}

// StoreLimits bound the work one query may cause.
type StoreLimits struct {
	// SeriesSampleLimit per Series call (0: unlimited).
	// +kubebuilder:validation:Minimum=0
	// +optional
	SeriesSampleLimit int64 `json:"seriesSampleLimit,omitempty"`
	// TouchedSeriesLimit per Series call (0: unlimited).
	// +kubebuilder:validation:Minimum=0
	// +optional
	TouchedSeriesLimit int64 `json:"touchedSeriesLimit,omitempty"`
	// SeriesMaxConcurrency is how many Series calls run at once per pod.
	// +kubebuilder:default=20
	// +kubebuilder:validation:Minimum=1
	// +optional
	SeriesMaxConcurrency int32 `json:"seriesMaxConcurrency,omitempty"`
}

// ChunkDiskCacheSpec sizes the disk chunk cache.
type ChunkDiskCacheSpec struct {
	// MaxSize of the chunk data kept on disk: 0 turns the cache off,
	// otherwise at least 1Mi.
	// +kubebuilder:validation:XValidation:rule="isQuantity(string(self)) && ((!quantity(string(self)).isLessThan(quantity('0')) && !quantity(string(self)).isGreaterThan(quantity('0'))) || !quantity(string(self)).isLessThan(quantity('1Mi')))",message="chunkDiskCache.maxSize must be 0 (off) or at least 1Mi"
	MaxSize resource.Quantity `json:"maxSize"`
}

// IndexHeaderSpec configures index-header files.
type IndexHeaderSpec struct {
	// LazyReader opens index-headers on first use and closes idle ones.
	// +optional
	LazyReader bool `json:"lazyReader,omitempty"`
	// Storage keeps index-headers across restarts. Without it an emptyDir is used.
	// +optional
	Storage *StorageSpec `json:"storage,omitempty"`
}

// ShardStatus is the sync state of one shard.
type ShardStatus struct {
	// Shard index, 0-based.
	Shard int32 `json:"shard"`
	// ReadyReplicas of the shard.
	ReadyReplicas int32 `json:"readyReplicas"`
	// Blocks loaded (the smallest over the shard's replicas).
	Blocks int64 `json:"blocks"`
	// LastSync is the oldest successful sync over the shard's replicas.
	// +optional
	LastSync *metav1.Time `json:"lastSync,omitempty"`
	// MinTime served.
	// +optional
	MinTime *metav1.Time `json:"minTime,omitempty"`
	// MaxTime served.
	// +optional
	MaxTime *metav1.Time `json:"maxTime,omitempty"`
	// IndexHeaderBytes on disk.
	// +optional
	IndexHeaderBytes int64 `json:"indexHeaderBytes,omitempty"`
	// LastError of a replica, if any.
	// +optional
	LastError string `json:"lastError,omitempty"`
}

// StoreGatewayStatus is the observed state of a StoreGateway.
type StoreGatewayStatus struct {
	// ObservedGeneration is the generation the status describes.
	// +optional
	ObservedGeneration int64 `json:"observedGeneration,omitempty"`
	// Conditions: Ready and Synced.
	// +listType=map
	// +listMapKey=type
	// +optional
	Conditions []metav1.Condition `json:"conditions,omitempty"`
	// Shards: one entry per shard.
	// +optional
	Shards []ShardStatus `json:"shards,omitempty"`
	// ReadyShards is "ready/total", for display.
	// +optional
	ReadyShards string `json:"readyShards,omitempty"`
	// Blocks loaded over all shards.
	// +optional
	Blocks int64 `json:"blocks"`
	// LastSync is the oldest last sync over all shards.
	// +optional
	LastSync *metav1.Time `json:"lastSync,omitempty"`
	// MinTime served over all shards.
	// +optional
	MinTime *metav1.Time `json:"minTime,omitempty"`
	// MaxTime served over all shards.
	// +optional
	MaxTime *metav1.Time `json:"maxTime,omitempty"`
}

// StoreGateway serves the blocks of a Bucket over the Thanos StoreAPI, sharded by block.
// +kubebuilder:object:root=true
// +kubebuilder:subresource:status
// +kubebuilder:resource:shortName=sgw,categories=stevedore
// +kubebuilder:printcolumn:name="Ready",type=string,JSONPath=`.status.conditions[?(@.type=="Ready")].status`
// +kubebuilder:printcolumn:name="Shards",type=string,JSONPath=`.status.readyShards`
// +kubebuilder:printcolumn:name="Blocks",type=integer,JSONPath=`.status.blocks`
// +kubebuilder:printcolumn:name="Last Sync",type=date,JSONPath=`.status.lastSync`
// +kubebuilder:printcolumn:name="Min Time",type=string,JSONPath=`.status.minTime`
// +kubebuilder:printcolumn:name="Max Time",type=string,JSONPath=`.status.maxTime`
// +kubebuilder:printcolumn:name="Age",type=date,JSONPath=`.metadata.creationTimestamp`
type StoreGateway struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`

	Spec   StoreGatewaySpec   `json:"spec,omitempty"`
	Status StoreGatewayStatus `json:"status,omitempty"`
}

// StoreGatewayList contains a list of StoreGateway.
// +kubebuilder:object:root=true
type StoreGatewayList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []StoreGateway `json:"items"`
}

func init() {
	SchemeBuilder.Register(&StoreGateway{}, &StoreGatewayList{})
}

// ShardCount is the number of shards with the default applied.
func (s *StoreGateway) ShardCount() int32 {
	if s.Spec.Shards < 1 {
		return 1
	}
	return s.Spec.Shards
}
