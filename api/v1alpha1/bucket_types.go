package v1alpha1

import (
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// BucketType is an object storage provider supported by thanos-io/objstore.
// +kubebuilder:validation:Enum=S3;GCS;AZURE;SWIFT;COS;OSS;FILESYSTEM
type BucketType string

// The providers a Bucket can use.
const (
	BucketS3         BucketType = "S3"
	BucketGCS        BucketType = "GCS"
	BucketAzure      BucketType = "AZURE"
	BucketSwift      BucketType = "SWIFT"
	BucketCOS        BucketType = "COS"
	BucketOSS        BucketType = "OSS"
	BucketFilesystem BucketType = "FILESYSTEM"
)

// BucketSpec says where blocks are stored. Give either `type` with the matching
// provider section, or `configSecret` holding a complete objstore YAML.
// +kubebuilder:validation:XValidation:rule="has(self.type) != has(self.configSecret)",message="set exactly one of type (with its provider section) or configSecret"
// +kubebuilder:validation:XValidation:rule="[has(self.s3), has(self.gcs), has(self.azure), has(self.swift), has(self.cos), has(self.oss), has(self.filesystem)].filter(x, x).size() <= 1",message="set at most one provider section (s3, gcs, azure, swift, cos, oss, filesystem)"
// +kubebuilder:validation:XValidation:rule="!has(self.type) || (self.type == 'S3' && has(self.s3)) || (self.type == 'GCS' && has(self.gcs)) || (self.type == 'AZURE' && has(self.azure)) || (self.type == 'SWIFT' && has(self.swift)) || (self.type == 'COS' && has(self.cos)) || (self.type == 'OSS' && has(self.oss)) || (self.type == 'FILESYSTEM' && has(self.filesystem))",message="the provider section matching type must be set (e.g. type: S3 needs s3: {...})"
// +kubebuilder:validation:XValidation:rule="!has(self.configSecret) || !(has(self.s3) || has(self.gcs) || has(self.azure) || has(self.swift) || has(self.cos) || has(self.oss) || has(self.filesystem))",message="configSecret holds the whole objstore config: do not also set a provider section"
type BucketSpec struct {
	// Type of the object storage provider.
	// +optional
	Type BucketType `json:"type,omitempty"`

	// S3 and S3-compatible stores (MinIO, Ceph RGW, ...).
	// +optional
	S3 *S3Bucket `json:"s3,omitempty"`
	// GCS is Google Cloud Storage.
	// +optional
	GCS *GCSBucket `json:"gcs,omitempty"`
	// Azure is Azure Blob Storage.
	// +optional
	Azure *AzureBucket `json:"azure,omitempty"`
	// Swift is OpenStack Swift.
	// +optional
	Swift *SwiftBucket `json:"swift,omitempty"`
	// COS is Tencent Cloud Object Storage.
	// +optional
	COS *COSBucket `json:"cos,omitempty"`
	// OSS is Alibaba Cloud Object Storage Service.
	// +optional
	OSS *OSSBucket `json:"oss,omitempty"`
	// Filesystem stores blocks in a local directory (tests and single-node setups only).
	// +optional
	Filesystem *FilesystemBucket `json:"filesystem,omitempty"`

	// ConfigSecret references a Secret key holding a complete objstore
	// configuration (`type:` and `config:`), as Thanos and prometheus-operator read it.
	// +optional
	ConfigSecret *corev1.SecretKeySelector `json:"configSecret,omitempty"`

	// Prefix under which every object is stored, so one bucket can hold many tenants.
	// +kubebuilder:validation:Pattern=`^[A-Za-z0-9._/-]*$`
	// +kubebuilder:validation:XValidation:rule="!self.startsWith('/')",message="prefix must not start with /"
	// +optional
	Prefix string `json:"prefix,omitempty"`

	// Probe configures the reachability check of the operator.
	// +optional
	Probe BucketProbe `json:"probe,omitempty"`
}

// BucketProbe configures how the operator checks that a bucket is reachable.
type BucketProbe struct {
	// Interval between probes.
	// +kubebuilder:default="5m"
	// +optional
	Interval *metav1.Duration `json:"interval,omitempty"`
	// Timeout of one probe.
	// +kubebuilder:default="15s"
	// +optional
	Timeout *metav1.Duration `json:"timeout,omitempty"`
	// Write also writes, reads back and deletes a small probe object, proving
	// the credentials may write (the default probe only lists).
	// +optional
	Write bool `json:"write,omitempty"`
}

// S3Bucket configures an S3 or S3-compatible bucket.
type S3Bucket struct {
	// Bucket name.
	// +kubebuilder:validation:MinLength=1
	Bucket string `json:"bucket"`
	// Endpoint host[:port] without scheme, e.g. s3.eu-west-1.amazonaws.com or minio.minio.svc:9000.
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:XValidation:rule="!self.contains('://')",message="endpoint is host[:port] without a scheme; use insecure: true for http"
	Endpoint string `json:"endpoint"`
	// Region of the bucket.
	// +optional
	Region string `json:"region,omitempty"`
	// Insecure uses http instead of https.
	// +optional
	Insecure bool `json:"insecure,omitempty"`
	// Credentials read from a Secret. Without them the pods use their cloud
	// identity (IRSA, instance profile) through the AWS credential chain.
	// +optional
	Credentials *S3Credentials `json:"credentials,omitempty"`
}

// S3Credentials references the access and secret keys in a Secret.
type S3Credentials struct {
	// SecretName in the Bucket's namespace.
	// +kubebuilder:validation:MinLength=1
	SecretName string `json:"secretName"`
	// AccessKeyKey is the Secret key holding the access key ID.
	// +kubebuilder:default=access_key
	// +optional
	AccessKeyKey string `json:"accessKeyKey,omitempty"`
	// SecretKeyKey is the Secret key holding the secret access key.
	// +kubebuilder:default=secret_key
	// +optional
	SecretKeyKey string `json:"secretKeyKey,omitempty"`
}

// GCSBucket configures a Google Cloud Storage bucket.
type GCSBucket struct {
	// Bucket name.
	// +kubebuilder:validation:MinLength=1
	Bucket string `json:"bucket"`
	// ServiceAccount references a Secret key holding a service account JSON key.
	// Without it the pods use Workload Identity.
	// +optional
	ServiceAccount *corev1.SecretKeySelector `json:"serviceAccount,omitempty"`
}

// AzureBucket configures an Azure Blob Storage container.
type AzureBucket struct {
	// StorageAccount name.
	// +kubebuilder:validation:MinLength=1
	StorageAccount string `json:"storageAccount"`
	// Container name.
	// +kubebuilder:validation:MinLength=1
	Container string `json:"container"`
	// Endpoint suffix, e.g. blob.core.windows.net.
	// +optional
	Endpoint string `json:"endpoint,omitempty"`
	// StorageAccountKey references a Secret key holding the account key.
	// Without it the pods use their managed identity.
	// +optional
	StorageAccountKey *corev1.SecretKeySelector `json:"storageAccountKey,omitempty"`
}

// SwiftBucket configures an OpenStack Swift container.
type SwiftBucket struct {
	// AuthURL of Keystone.
	// +kubebuilder:validation:MinLength=1
	AuthURL string `json:"authURL"`
	// ContainerName to store blocks in.
	// +kubebuilder:validation:MinLength=1
	ContainerName string `json:"containerName"`
	// Username to authenticate as.
	// +optional
	Username string `json:"username,omitempty"`
	// Password references a Secret key holding the password.
	// +optional
	Password *corev1.SecretKeySelector `json:"password,omitempty"`
	// ProjectName (tenant).
	// +optional
	ProjectName string `json:"projectName,omitempty"`
	// RegionName of the container.
	// +optional
	RegionName string `json:"regionName,omitempty"`
	// UserDomainName of the user.
	// +optional
	UserDomainName string `json:"userDomainName,omitempty"`
	// ProjectDomainName of the project.
	// +optional
	ProjectDomainName string `json:"projectDomainName,omitempty"`
}

// COSBucket configures a Tencent COS bucket.
type COSBucket struct {
	// Bucket name.
	// +kubebuilder:validation:MinLength=1
	Bucket string `json:"bucket"`
	// Region of the bucket.
	// +optional
	Region string `json:"region,omitempty"`
	// AppID of the account.
	// +optional
	AppID string `json:"appId,omitempty"`
	// Endpoint overrides the URL built from bucket, appId and region.
	// +optional
	Endpoint string `json:"endpoint,omitempty"`
	// Credentials: a Secret with the secret ID and key.
	// +optional
	Credentials *KeyPairCredentials `json:"credentials,omitempty"`
}

// OSSBucket configures an Alibaba Cloud OSS bucket.
type OSSBucket struct {
	// Bucket name.
	// +kubebuilder:validation:MinLength=1
	Bucket string `json:"bucket"`
	// Endpoint of the OSS region.
	// +kubebuilder:validation:MinLength=1
	Endpoint string `json:"endpoint"`
	// Credentials: a Secret with the access key ID and secret.
	// +optional
	Credentials *KeyPairCredentials `json:"credentials,omitempty"`
}

// KeyPairCredentials references an ID/secret pair in a Secret.
type KeyPairCredentials struct {
	// SecretName in the Bucket's namespace.
	// +kubebuilder:validation:MinLength=1
	SecretName string `json:"secretName"`
	// IDKey is the Secret key holding the key ID.
	// +kubebuilder:default=id
	// +optional
	IDKey string `json:"idKey,omitempty"`
	// SecretKey is the Secret key holding the secret.
	// +kubebuilder:default=secret
	// +optional
	SecretKey string `json:"secretKey,omitempty"`
}

// FilesystemBucket stores blocks in a directory on the pods' filesystem.
type FilesystemBucket struct {
	// Directory to store blocks in.
	// +kubebuilder:validation:MinLength=1
	Directory string `json:"directory"`
}

// BucketStatus is the observed state of a Bucket.
type BucketStatus struct {
	// ObservedGeneration is the generation the status describes.
	// +optional
	ObservedGeneration int64 `json:"observedGeneration,omitempty"`
	// Conditions: Ready and Reachable.
	// +listType=map
	// +listMapKey=type
	// +optional
	Conditions []metav1.Condition `json:"conditions,omitempty"`
	// Type of the provider, also when it comes from configSecret.
	// +optional
	Type BucketType `json:"type,omitempty"`
	// BucketName is the provider's bucket or container name, for display.
	// +optional
	BucketName string `json:"bucketName,omitempty"`
	// ConfigSecretName is the Secret the operator rendered the objstore config into.
	// Workloads mount it; it is owned by this Bucket.
	// +optional
	ConfigSecretName string `json:"configSecretName,omitempty"`
	// ConfigHash identifies the rendered config; it changes when credentials rotate.
	// +optional
	ConfigHash string `json:"configHash,omitempty"`
	// LastProbeTime is when the reachability probe last ran.
	// +optional
	LastProbeTime *metav1.Time `json:"lastProbeTime,omitempty"`
}

// Bucket is an object storage bucket and its credentials.
// +kubebuilder:object:root=true
// +kubebuilder:subresource:status
// +kubebuilder:resource:shortName=bkt,categories=stevedore
// +kubebuilder:printcolumn:name="Type",type=string,JSONPath=`.status.type`
// +kubebuilder:printcolumn:name="Bucket",type=string,JSONPath=`.status.bucketName`
// +kubebuilder:printcolumn:name="Ready",type=string,JSONPath=`.status.conditions[?(@.type=="Ready")].status`
// +kubebuilder:printcolumn:name="Reason",type=string,JSONPath=`.status.conditions[?(@.type=="Ready")].reason`,priority=1
// +kubebuilder:printcolumn:name="Age",type=date,JSONPath=`.metadata.creationTimestamp`
type Bucket struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`

	Spec   BucketSpec   `json:"spec,omitempty"`
	Status BucketStatus `json:"status,omitempty"`
}

// BucketList contains a list of Bucket.
// +kubebuilder:object:root=true
type BucketList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []Bucket `json:"items"`
}

func init() {
	SchemeBuilder.Register(&Bucket{}, &BucketList{})
}
