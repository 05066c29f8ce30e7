package controllers

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/thanos-io/objstore/providers/azure"
	"github.com/thanos-io/objstore/providers/cos"
	"github.com/thanos-io/objstore/providers/filesystem"
	"github.com/thanos-io/objstore/providers/gcs"
	"github.com/thanos-io/objstore/providers/oss"
	"github.com/thanos-io/objstore/providers/s3"
	"github.com/thanos-io/objstore/providers/swift"
	yamlv2 "gopkg.in/yaml.v2"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/stevedore-dev/stevedore/api/v1alpha1"
)

// TestRenderObjstore renders each provider with credentials from a real
// Secret and parses the result strictly into the provider's own Config type
// from thanos-io/objstore, so a misspelled key fails here, not in a pod.
func TestRenderObjstore(t *testing.T) {
	requireEnv(t)
	ns := newNamespace(t)
	ctx := context.Background()
	sec := &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Name: "creds", Namespace: ns},
		StringData: map[string]string{
			"access_key": "AKIA\n", "secret_key": "s3cr3t", "id": "the-id", "secret": "the-secret",
			"sa.json": `{"type":"service_account"}`, "key": "azkey", "password": "pw",
			"objstore.yaml": "type: s3\nconfig:\n  bucket: from-secret\n  endpoint: minio:9000\nprefix: old\n",
			"bad.yaml":      "type: FTP\nconfig: {}\n",
		},
	}
	if err := k8s.Create(ctx, sec); err != nil {
		t.Fatal(err)
	}
	sel := func(key string) *corev1.SecretKeySelector {
		return &corev1.SecretKeySelector{LocalObjectReference: corev1.LocalObjectReference{Name: "creds"}, Key: key}
	}
	pair := &v1alpha1.KeyPairCredentials{SecretName: "creds"}
	for _, tc := range []struct {
		name     string
		spec     v1alpha1.BucketSpec
		into     any
		wantType string
		want     []string
	}{
		{"s3", v1alpha1.BucketSpec{Type: v1alpha1.BucketS3, Prefix: "tenant-a", S3: &v1alpha1.S3Bucket{
			Bucket: "b", Endpoint: "minio:9000", Region: "eu", Insecure: true,
			Credentials: &v1alpha1.S3Credentials{SecretName: "creds"},
		}}, &s3.Config{}, "S3", []string{"access_key: AKIA\n", "secret_key: s3cr3t", "insecure: true", "region: eu", "prefix: tenant-a"}},
		{"s3 identity", v1alpha1.BucketSpec{Type: v1alpha1.BucketS3, S3: &v1alpha1.S3Bucket{Bucket: "b", Endpoint: "s3.amazonaws.com"}},
			&s3.Config{}, "S3", []string{"endpoint: s3.amazonaws.com"}},
		{"gcs", v1alpha1.BucketSpec{Type: v1alpha1.BucketGCS, GCS: &v1alpha1.GCSBucket{Bucket: "b", ServiceAccount: sel("sa.json")}},
			&gcs.Config{}, "GCS", []string{`service_account: '{"type":"service_account"}'`}},
		{"azure", v1alpha1.BucketSpec{Type: v1alpha1.BucketAzure, Azure: &v1alpha1.AzureBucket{
			StorageAccount: "acct", Container: "c", Endpoint: "blob.core.windows.net", StorageAccountKey: sel("key"),
		}}, &azure.Config{}, "AZURE", []string{"storage_account: acct", "storage_account_key: azkey", "container: c"}},
		{"swift", v1alpha1.BucketSpec{Type: v1alpha1.BucketSwift, Swift: &v1alpha1.SwiftBucket{
			AuthURL: "https://keystone/v3", ContainerName: "c", Username: "u", Password: sel("password"), ProjectName: "p",
			RegionName: "r", UserDomainName: "ud", ProjectDomainName: "pd",
		}}, &swift.Config{}, "SWIFT", []string{"auth_url: https://keystone/v3", "password: pw", "container_name: c"}},
		{"cos", v1alpha1.BucketSpec{Type: v1alpha1.BucketCOS, COS: &v1alpha1.COSBucket{Bucket: "b", Region: "ap", AppID: "123", Credentials: pair}},
			&cos.Config{}, "COS", []string{"secret_id: the-id", "secret_key: the-secret", "app_id: \"123\""}},
		{"oss", v1alpha1.BucketSpec{Type: v1alpha1.BucketOSS, OSS: &v1alpha1.OSSBucket{Bucket: "b", Endpoint: "oss.example", Credentials: pair}},
			&oss.Config{}, "ALIYUNOSS", []string{"access_key_id: the-id", "access_key_secret: the-secret"}},
		{"filesystem", v1alpha1.BucketSpec{Type: v1alpha1.BucketFilesystem, Filesystem: &v1alpha1.FilesystemBucket{Directory: "/data"}},
			&filesystem.Config{}, "FILESYSTEM", []string{"directory: /data"}},
		{"config secret with prefix", v1alpha1.BucketSpec{ConfigSecret: sel("objstore.yaml"), Prefix: "new"},
			&s3.Config{}, "s3", []string{"bucket: from-secret", "prefix: new"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b := &v1alpha1.Bucket{ObjectMeta: metav1.ObjectMeta{Name: "b", Namespace: ns}, Spec: tc.spec}
			got, err := renderObjstore(ctx, k8s, b)
			if err != nil {
				t.Fatal(err)
			}
			var doc struct {
				Type   string         `yaml:"type"`
				Config map[string]any `yaml:"config"`
				Prefix string         `yaml:"prefix"`
			}
			if err := yamlv2.UnmarshalStrict(got.YAML, &doc); err != nil {
				t.Fatalf("objstore YAML does not parse: %v\n%s", err, got.YAML)
			}
			if doc.Type != tc.wantType {
				t.Errorf("type %q, want %q", doc.Type, tc.wantType)
			}
			cfg, _ := yamlv2.Marshal(doc.Config)
			if err := yamlv2.UnmarshalStrict(cfg, tc.into); err != nil {
				t.Errorf("config is not a valid %T: %v\n%s", tc.into, err, cfg)
			}
			for _, w := range tc.want {
				if !strings.Contains(string(got.YAML), w) {
					t.Errorf("rendered config lacks %q:\n%s", w, got.YAML)
				}
			}
			if got.BucketName == "" {
				t.Errorf("no bucket name for display")
			}
		})
	}

	// What the user must fix is reported as such, with the Secret named.
	for _, tc := range []struct {
		name   string
		spec   v1alpha1.BucketSpec
		reason string
		msg    string
	}{
		{"missing secret", v1alpha1.BucketSpec{Type: v1alpha1.BucketS3, S3: &v1alpha1.S3Bucket{Bucket: "b", Endpoint: "e",
			Credentials: &v1alpha1.S3Credentials{SecretName: "nope"}}}, ReasonSecretNotFound, "Secret " + ns + "/nope not found"},
		{"missing key", v1alpha1.BucketSpec{Type: v1alpha1.BucketS3, S3: &v1alpha1.S3Bucket{Bucket: "b", Endpoint: "e",
			Credentials: &v1alpha1.S3Credentials{SecretName: "creds", AccessKeyKey: "ak"}}}, ReasonSecretNotFound, `has no key "ak"`},
		{"bad config secret", v1alpha1.BucketSpec{ConfigSecret: sel("bad.yaml")}, ReasonInvalidConfig, `type "FTP" is not one of`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b := &v1alpha1.Bucket{ObjectMeta: metav1.ObjectMeta{Name: "b", Namespace: ns}, Spec: tc.spec}
			_, err := renderObjstore(ctx, k8s, b)
			var ce *configError
			if !errors.As(err, &ce) {
				t.Fatalf("want a configError, got %v", err)
			}
			if ce.reason != tc.reason || !strings.Contains(ce.msg, tc.msg) {
				t.Fatalf("got %s %q, want %s containing %q", ce.reason, ce.msg, tc.reason, tc.msg)
			}
		})
	}
}
