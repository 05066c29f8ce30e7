package controllers

import (
	"strings"
	"testing"
)

// TestValidation applies invalid resources with kubectl and checks that the
// API server rejects each one with the message of the CRD schema or CEL rule
// that catches it.
func TestValidation(t *testing.T) {
	requireEnv(t)
	ns := newNamespace(t)
	const (
		bucketHead = "apiVersion: monitoring.stevedore.dev/v1alpha1\nkind: Bucket\nmetadata:\n  name: b\nspec:\n"
		shipHead   = "apiVersion: monitoring.stevedore.dev/v1alpha1\nkind: PrometheusShipper\nmetadata:\n  name: p\nspec:\n  bucketRef: {name: b}\n"
		storeHead  = "apiVersion: monitoring.stevedore.dev/v1alpha1\nkind: StoreGateway\nmetadata:\n  name: s\nspec:\n  bucketRef: {name: b}\n"
		s3         = "  s3: {bucket: x, endpoint: 'minio:9000'}\n"
	)
	for _, tc := range []struct {
		name, yaml, want string
	}{
		// Bucket: exactly one way to give the config.
		{"bucket/no config", bucketHead + "  prefix: a\n", "set exactly one of type (with its provider section) or configSecret"},
		{"bucket/type and configSecret", bucketHead + "  type: S3\n" + s3 + "  configSecret: {name: c, key: k}\n", "set exactly one of type (with its provider section) or configSecret"},
		{"bucket/type without section", bucketHead + "  type: S3\n", "the provider section matching type must be set"},
		{"bucket/section of another type", bucketHead + "  type: GCS\n" + s3, "the provider section matching type must be set"},
		{"bucket/two sections", bucketHead + "  type: S3\n" + s3 + "  gcs: {bucket: other}\n", "set at most one provider section"},
		{"bucket/configSecret and section", bucketHead + "  configSecret: {name: c, key: k}\n" + s3, "configSecret holds the whole objstore config: do not also set a provider section"},
		{"bucket/unknown type", bucketHead + "  type: FTP\n", `Unsupported value: "FTP"`},
		{"bucket/endpoint with scheme", bucketHead + "  type: S3\n  s3: {bucket: x, endpoint: 'http://minio:9000'}\n", "endpoint is host[:port] without a scheme"},
		{"bucket/empty bucket name", bucketHead + "  type: S3\n  s3: {bucket: '', endpoint: 'minio:9000'}\n", "spec.s3.bucket: Invalid value"},
		{"bucket/absolute prefix", bucketHead + "  type: S3\n" + s3 + "  prefix: /tenant\n", "prefix must not start with /"},
		{"bucket/prefix characters", bucketHead + "  type: S3\n" + s3 + "  prefix: 'a b'\n", "spec.prefix: Invalid value"},

		// PrometheusShipper.
		{"shipper/no bucketRef", "apiVersion: monitoring.stevedore.dev/v1alpha1\nkind: PrometheusShipper\nmetadata:\n  name: p\nspec:\n  prometheus:\n    externalLabels: {cluster: a}\n", "spec.bucketRef: Required value"},
		{"shipper/no external labels", shipHead + "  prometheus: {}\n", "spec.prometheus.externalLabels: Required value"},
		{"shipper/empty external labels", shipHead + "  prometheus:\n    externalLabels: {}\n", "should have at least 1 properties"},
		{"shipper/bad label name", shipHead + "  prometheus:\n    externalLabels: {'1cluster': a}\n", "external label names must match [a-zA-Z_][a-zA-Z0-9_]* and must not start with __"},
		{"shipper/reserved label name", shipHead + "  prometheus:\n    externalLabels: {__name__: a}\n", "must not start with __"},
		{"shipper/empty label value", shipHead + "  prometheus:\n    externalLabels: {cluster: ''}\n", "external label values must not be empty"},
		{"shipper/replica label in external labels", shipHead + "  prometheus:\n    externalLabels: {cluster: a, prometheus_replica: x}\n", "externalLabels must not contain the replicaLabel"},
		{"shipper/scrape config twice", shipHead + "  prometheus:\n    externalLabels: {cluster: a}\n    scrapeConfig:\n      inline: 'scrape_configs: []'\n      configMapRef: {name: c, key: k}\n", "set exactly one of inline or configMapRef"},
		{"shipper/scrape config empty", shipHead + "  prometheus:\n    externalLabels: {cluster: a}\n    scrapeConfig: {}\n", "set exactly one of inline or configMapRef"},
		{"shipper/short block duration", shipHead + "  prometheus:\n    externalLabels: {cluster: a}\n    blockDuration: 30s\n", "blockDuration must be at least 1m"},
		{"shipper/bad retention", shipHead + "  prometheus:\n    externalLabels: {cluster: a}\n    retention: 1 day\n", "spec.prometheus.retention: Invalid value"},
		{"shipper/negative replicas", shipHead + "  prometheus:\n    externalLabels: {cluster: a}\n    replicas: -1\n", "should be greater than or equal to 0"},
		{"shipper/bad hash func", shipHead + "  prometheus:\n    externalLabels: {cluster: a}\n  shipper: {hashFunc: MD5}\n", `Unsupported value: "MD5"`},
		{"shipper/bad min time", shipHead + "  prometheus:\n    externalLabels: {cluster: a}\n  shipper: {minTime: yesterday}\n", "spec.shipper.minTime: Invalid value"},
		{"shipper/bad log level", shipHead + "  prometheus:\n    externalLabels: {cluster: a}\n  agent: {logLevel: loud}\n", `Unsupported value: "loud"`},

		// StoreGateway.
		{"store/no bucketRef", "apiVersion: monitoring.stevedore.dev/v1alpha1\nkind: StoreGateway\nmetadata:\n  name: s\nspec:\n  shards: 1\n", "spec.bucketRef: Required value"},
		{"store/zero shards", storeHead + "  shards: 0\n", "spec.shards: Invalid value: 0: spec.shards in body should be greater than or equal to 1"},
		{"store/too many shards", storeHead + "  shards: 65\n", "should be less than or equal to 64"},
		{"store/zero replicas", storeHead + "  replicasPerShard: 0\n", "should be greater than or equal to 1"},
		{"store/time range reversed", storeHead + "  timeRange: {minTime: '2025-02-01T00:00:00Z', maxTime: '2025-01-01T00:00:00Z'}\n", "timeRange.minTime must be before timeRange.maxTime"},
		{"store/time range equal", storeHead + "  timeRange: {minTime: '2025-01-01T00:00:00Z', maxTime: '2025-01-01T00:00:00Z'}\n", "timeRange.minTime must be before timeRange.maxTime"},
		{"store/min time not RFC3339", storeHead + "  timeRange: {minTime: '2025-01-01T00:00'}\n", "timeRange.minTime must be RFC3339"},
		{"store/max time not RFC3339", storeHead + "  timeRange: {maxTime: '2025-01-01Tnoon'}\n", "timeRange.maxTime must be RFC3339"},
		{"store/time neither", storeHead + "  timeRange: {minTime: 'last week'}\n", "spec.timeRange.minTime: Invalid value"},
		{"store/cache both", storeHead + "  indexCache: {inMemory: {}, memcached: {addresses: ['m:11211']}}\n", "set exactly one of inMemory or memcached"},
		{"store/cache neither", storeHead + "  cachingBucket: {}\n", "set exactly one of inMemory or memcached"},
		{"store/memcached no addresses", storeHead + "  indexCache: {memcached: {addresses: []}}\n", "should have at least 1 items"},
		{"store/memcached empty address", storeHead + "  indexCache: {memcached: {addresses: ['']}}\n", "spec.indexCache.memcached.addresses[0]: Invalid value"},
		{"store/chunk disk cache too small", storeHead + "  chunkDiskCache: {maxSize: 1Ki}\n", "chunkDiskCache.maxSize must be 0 (off) or at least 1Mi"},
		{"store/negative limit", storeHead + "  limits: {seriesSampleLimit: -1}\n", "should be greater than or equal to 0"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			out, err := kubectl(t, []byte(tc.yaml), "apply", "-n", ns, "-f", "-")
			if err == nil {
				t.Fatalf("accepted:\n%s\nkubectl: %s", tc.yaml, out)
			}
			if !strings.Contains(out, tc.want) {
				t.Fatalf("rejected without %q:\n%s", tc.want, out)
			}
		})
	}
	// And the samples are valid.
	for _, s := range []string{"shipper.yaml", "storegateway.yaml"} {
		mustKubectl(t, nil, "apply", "--dry-run=server", "-n", ns, "-f", "../config/samples/"+s)
	}
}
