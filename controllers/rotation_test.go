package controllers

import (
	"context"
	"fmt"
	"path/filepath"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

// TestSecretRotation rotates the credentials Secret a Bucket reads and checks
// that the pod-template hash of every workload using that Bucket changes, so
// the pods roll with the new credentials.
func TestSecretRotation(t *testing.T) {
	requireEnv(t)
	ns := newNamespace(t)
	for _, s := range []string{"shipper.yaml", "storegateway.yaml"} {
		mustKubectl(t, nil, "apply", "-n", ns, "-f", filepath.Join("..", "config", "samples", s))
	}
	workloads := []string{"prometheus", "store-shard-0"}
	hashes := func() (map[string]string, error) {
		out := map[string]string{}
		for _, name := range workloads {
			var sts appsv1.StatefulSet
			if err := k8s.Get(context.Background(), client.ObjectKey{Namespace: ns, Name: name}, &sts); err != nil {
				return nil, err
			}
			h := sts.Spec.Template.Annotations[AnnotationConfigHash]
			if h == "" {
				return nil, fmt.Errorf("%s has no %s annotation", name, AnnotationConfigHash)
			}
			out[name] = h
		}
		return out, nil
	}
	var before map[string]string
	eventually(t, 30*time.Second, "workloads created", func() (err error) {
		before, err = hashes()
		return err
	})

	// Rotate the secret key, as a user would.
	var sec corev1.Secret
	if err := k8s.Get(context.Background(), client.ObjectKey{Namespace: ns, Name: "minio-credentials"}, &sec); err != nil {
		t.Fatal(err)
	}
	sec.Data["secret_key"] = []byte("rotated-secret-key")
	if err := k8s.Update(context.Background(), &sec); err != nil {
		t.Fatal(err)
	}

	eventually(t, 30*time.Second, "every pod-template hash changed", func() error {
		after, err := hashes()
		if err != nil {
			return err
		}
		for _, name := range workloads {
			if after[name] == before[name] {
				return fmt.Errorf("%s still has hash %s", name, after[name])
			}
		}
		return nil
	})
	// The rendered config carries the new key.
	var rendered corev1.Secret
	if err := k8s.Get(context.Background(), client.ObjectKey{Namespace: ns, Name: "metrics-objstore"}, &rendered); err != nil {
		t.Fatal(err)
	}
	if got := string(rendered.Data[objstoreKey]); !contains(got, "secret_key: rotated-secret-key") {
		t.Fatalf("rendered config does not carry the rotated key:\n%s", got)
	}
}
