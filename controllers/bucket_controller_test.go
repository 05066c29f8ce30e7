package controllers

import (
	"context"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/stevedore-dev/stevedore/api/v1alpha1"
	"github.com/stevedore-dev/stevedore/internal/testserver"
)

// bucketYAML is a Bucket on an S3 endpoint with credentials from Secret "creds".
func bucketYAML(name, bucket, endpoint string, write bool) string {
	return fmt.Sprintf(`apiVersion: monitoring.stevedore.dev/v1alpha1
kind: Bucket
metadata:
  name: %s
spec:
  type: S3
  s3:
    bucket: %s
    endpoint: %q
    insecure: true
    credentials:
      secretName: creds
  probe:
    write: %t
    timeout: 20s
`, name, bucket, endpoint, write)
}

func credsYAML(access, secret string) string {
	return fmt.Sprintf("apiVersion: v1\nkind: Secret\nmetadata:\n  name: creds\nstringData:\n  access_key: %q\n  secret_key: %q\n", access, secret)
}

// waitCondition waits until the Bucket's condition t has status and returns it.
func waitBucketCondition(t *testing.T, ns, name, ct string, status metav1.ConditionStatus, timeout time.Duration) (*v1alpha1.Bucket, metav1.Condition) {
	t.Helper()
	var b v1alpha1.Bucket
	var c metav1.Condition
	eventually(t, timeout, fmt.Sprintf("Bucket %s %s=%s", name, ct, status), func() error {
		if err := k8s.Get(context.Background(), client.ObjectKey{Namespace: ns, Name: name}, &b); err != nil {
			return err
		}
		got := meta.FindStatusCondition(b.Status.Conditions, ct)
		if got == nil {
			return fmt.Errorf("no %s condition in %+v", ct, b.Status)
		}
		if got.Status != status {
			return fmt.Errorf("%s is %s (%s: %s)", ct, got.Status, got.Reason, got.Message)
		}
		c = *got
		return nil
	})
	return &b, c
}

// TestBucketUnreachableEndpoint points a Bucket at a port nobody listens on:
// Reachable turns False with the S3 client's connection error, and a Warning
// event says so.
func TestBucketUnreachableEndpoint(t *testing.T) {
	requireEnv(t)
	ns := newNamespace(t)
	endpoint := testserver.Addr(testserver.FreePort(t))
	mustKubectl(t, []byte(credsYAML("a", "b")+"---\n"+bucketYAML("nowhere", "metrics", endpoint, false)), "apply", "-n", ns, "-f", "-")
	b, c := waitBucketCondition(t, ns, "nowhere", v1alpha1.ConditionReachable, metav1.ConditionFalse, 60*time.Second)
	if c.Reason != ReasonUnreachable || !strings.Contains(c.Message, "connection refused") {
		t.Errorf("Reachable: %s %q, want %s with the connection error", c.Reason, c.Message, ReasonUnreachable)
	}
	if r := meta.FindStatusCondition(b.Status.Conditions, v1alpha1.ConditionReady); r == nil || r.Status != metav1.ConditionFalse {
		t.Errorf("Ready: %+v, want False", r)
	}
	if b.Status.ObservedGeneration != b.Generation || b.Status.LastProbeTime == nil || b.Status.ConfigSecretName != "nowhere-objstore" {
		t.Errorf("status: %+v", b.Status)
	}
	waitEvent(t, ns, "nowhere", ReasonUnreachable)
}

// TestBucketMissingSecret: a Bucket whose credentials Secret does not exist
// says so; creating the Secret later is picked up through the Secret watch.
func TestBucketMissingSecret(t *testing.T) {
	requireEnv(t)
	ns := newNamespace(t)
	endpoint := testserver.Addr(testserver.FreePort(t))
	mustKubectl(t, []byte(bucketYAML("b", "metrics", endpoint, false)), "apply", "-n", ns, "-f", "-")
	_, c := waitBucketCondition(t, ns, "b", v1alpha1.ConditionReady, metav1.ConditionFalse, 20*time.Second)
	if c.Reason != ReasonSecretNotFound || !strings.Contains(c.Message, "Secret "+ns+"/creds not found") {
		t.Fatalf("Ready: %s %q", c.Reason, c.Message)
	}
	mustKubectl(t, []byte(credsYAML("a", "b")), "apply", "-n", ns, "-f", "-")
	eventually(t, 20*time.Second, "config rendered after the Secret appeared", func() error {
		var sec corev1.Secret
		return k8s.Get(context.Background(), client.ObjectKey{Namespace: ns, Name: "b-objstore"}, &sec)
	})
}

// TestBucketReachableMinIO probes real MinIO buckets: True for a bucket that
// exists (listing, then writing, reading back and deleting a probe object),
// False with MinIO's own error for bad credentials and a missing bucket.
func TestBucketReachableMinIO(t *testing.T) {
	requireEnv(t)
	if os.Getenv(testserver.EnvMinIO) == "" && testing.Short() {
		t.Skip("no MinIO")
	}
	m := testserver.StartMinIO(t)
	m.CreateBucket(t, "metrics")

	t.Run("real bucket", func(t *testing.T) {
		ns := newNamespace(t)
		mustKubectl(t, []byte(credsYAML(m.AccessKey, m.SecretKey)+"---\n"+bucketYAML("ok", "metrics", m.Endpoint, true)), "apply", "-n", ns, "-f", "-")
		b, c := waitBucketCondition(t, ns, "ok", v1alpha1.ConditionReachable, metav1.ConditionTrue, 60*time.Second)
		if c.Reason != ReasonReachable || !strings.Contains(c.Message, "wrote, read back and deleted") {
			t.Errorf("Reachable: %s %q", c.Reason, c.Message)
		}
		if r := meta.FindStatusCondition(b.Status.Conditions, v1alpha1.ConditionReady); r == nil || r.Status != metav1.ConditionTrue {
			t.Errorf("Ready: %+v", r)
		}
		// The probe object is gone again.
		if ok, err := m.Client(t, "metrics").Exists(context.Background(), "stevedore-probe/"+string(b.UID)); err != nil || ok {
			t.Errorf("probe object left behind (exists=%v, err=%v)", ok, err)
		}
		out := mustKubectl(t, nil, "get", "buckets", "-n", ns)
		if !regexpMatch(`(?m)^NAME\s+TYPE\s+BUCKET\s+READY\s+AGE$`, out) || !regexpMatch(`(?m)^ok\s+S3\s+metrics\s+True\s+`, out) {
			t.Errorf("kubectl get buckets:\n%s", out)
		}
	})
	t.Run("config secret", func(t *testing.T) {
		ns := newNamespace(t)
		cfg := string(m.ObjstoreConfig("metrics"))
		sec := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "objstore", Namespace: ns}, StringData: map[string]string{"objstore.yml": cfg}}
		if err := k8s.Create(context.Background(), sec); err != nil {
			t.Fatal(err)
		}
		mustKubectl(t, []byte("apiVersion: monitoring.stevedore.dev/v1alpha1\nkind: Bucket\nmetadata:\n  name: full\nspec:\n  configSecret: {name: objstore, key: objstore.yml}\n  prefix: tenant-b\n"), "apply", "-n", ns, "-f", "-")
		b, _ := waitBucketCondition(t, ns, "full", v1alpha1.ConditionReachable, metav1.ConditionTrue, 60*time.Second)
		if b.Status.Type != v1alpha1.BucketS3 || b.Status.BucketName != "metrics" {
			t.Errorf("status type %q bucket %q", b.Status.Type, b.Status.BucketName)
		}
	})
	for _, tc := range []struct {
		name, access, secret, bucket, want string
	}{
		{"unknown access key", "nobody", m.SecretKey, "metrics", "The Access Key Id you provided does not exist in our records"},
		{"wrong secret key", m.AccessKey, "wrong-secret", "metrics", "The request signature we calculated does not match the signature you provided"},
		{"missing bucket", m.AccessKey, m.SecretKey, "no-such-bucket", "The specified bucket does not exist"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ns := newNamespace(t)
			mustKubectl(t, []byte(credsYAML(tc.access, tc.secret)+"---\n"+bucketYAML("bad", tc.bucket, m.Endpoint, false)), "apply", "-n", ns, "-f", "-")
			_, c := waitBucketCondition(t, ns, "bad", v1alpha1.ConditionReachable, metav1.ConditionFalse, 60*time.Second)
			if c.Reason != ReasonUnreachable || !strings.Contains(c.Message, tc.want) {
				t.Errorf("Reachable: %s %q, want the provider's error %q", c.Reason, c.Message, tc.want)
			}
		})
	}
	t.Run("fixing the credentials", func(t *testing.T) {
		ns := newNamespace(t)
		mustKubectl(t, []byte(credsYAML(m.AccessKey, "wrong")+"---\n"+bucketYAML("fix", "metrics", m.Endpoint, false)), "apply", "-n", ns, "-f", "-")
		waitBucketCondition(t, ns, "fix", v1alpha1.ConditionReachable, metav1.ConditionFalse, 60*time.Second)
		mustKubectl(t, []byte(credsYAML(m.AccessKey, m.SecretKey)), "apply", "-n", ns, "-f", "-")
		waitBucketCondition(t, ns, "fix", v1alpha1.ConditionReachable, metav1.ConditionTrue, 60*time.Second)
		waitEvent(t, ns, "fix", ReasonReachable)
	})
}
