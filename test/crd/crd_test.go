// Package crd_test checks the generated CRDs against a real kube-apiserver:
// they install, kubectl lists the kinds with their printer columns, and the
// short names and category work.
package crd_test

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"sigs.k8s.io/controller-runtime/pkg/envtest"
)

const manifests = `
apiVersion: monitoring.stevedore.dev/v1alpha1
kind: Bucket
metadata: {name: blocks, namespace: default}
spec:
  type: S3
  s3: {bucket: thanos, endpoint: "minio.minio.svc:9000", insecure: true}
---
apiVersion: monitoring.stevedore.dev/v1alpha1
kind: PrometheusShipper
metadata: {name: k8s, namespace: default}
spec:
  bucketRef: {name: blocks}
  prometheus:
    externalLabels: {cluster: eu1}
---
apiVersion: monitoring.stevedore.dev/v1alpha1
kind: StoreGateway
metadata: {name: history, namespace: default}
spec:
  bucketRef: {name: blocks}
  shards: 2
`

func TestKubectlGetAllKinds(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a real kube-apiserver")
	}
	assets := os.Getenv("KUBEBUILDER_ASSETS")
	if assets == "" {
		t.Fatal(`KUBEBUILDER_ASSETS is not set: run the tests with make test, or eval "$(hack/testbin.sh kube etcd)"`)
	}
	env := &envtest.Environment{CRDDirectoryPaths: []string{"../../config/crd/bases"}, ErrorIfCRDPathMissing: true}
	// Stop even when Start fails half-way (e.g. a CRD the apiserver rejects),
	// or the apiserver and etcd it already started outlive the test.
	t.Cleanup(func() { _ = env.Stop() })
	if _, err := env.Start(); err != nil {
		t.Fatalf("start envtest: %v", err)
	}
	user, err := env.AddUser(envtest.User{Name: "admin", Groups: []string{"system:masters"}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	kc, err := user.KubeConfig()
	if err != nil {
		t.Fatal(err)
	}
	kubeconfig := filepath.Join(t.TempDir(), "kubeconfig")
	if err := os.WriteFile(kubeconfig, kc, 0o600); err != nil {
		t.Fatal(err)
	}
	kubectl := func(stdin string, args ...string) string {
		t.Helper()
		cmd := exec.Command(filepath.Join(assets, "kubectl"), append([]string{"--kubeconfig", kubeconfig}, args...)...)
		cmd.Stdin = strings.NewReader(stdin)
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("kubectl %v: %v\n%s", args, err, out)
		}
		return string(out)
	}
	kubectl(manifests, "apply", "-f", "-")

	for _, tc := range []struct {
		args    []string
		columns []string
		name    string
	}{
		{[]string{"get", "buckets"}, []string{"NAME", "TYPE", "BUCKET", "READY", "AGE"}, "blocks"},
		{[]string{"get", "prometheusshippers"}, []string{"NAME", "READY", "UPLOADED", "PENDING", "LAST UPLOAD", "AGE"}, "k8s"},
		{[]string{"get", "storegateways"}, []string{"NAME", "READY", "SHARDS", "BLOCKS", "LAST SYNC", "MIN TIME", "MAX TIME", "AGE"}, "history"},
		{[]string{"get", "sgw"}, []string{"NAME"}, "history"},
		{[]string{"get", "bkt,psh"}, []string{"NAME"}, "k8s"},
	} {
		out := kubectl("", tc.args...)
		header := strings.SplitN(out, "\n", 2)[0]
		for _, c := range tc.columns {
			if !strings.Contains(header, c) {
				t.Errorf("kubectl %v: header %q lacks column %s", tc.args, header, c)
			}
		}
		if !strings.Contains(out, tc.name) {
			t.Errorf("kubectl %v: %q not listed:\n%s", tc.args, tc.name, out)
		}
	}
	all := kubectl("", "get", "stevedore")
	for _, kind := range []string{"bucket.monitoring.stevedore.dev/blocks", "prometheusshipper.monitoring.stevedore.dev/k8s", "storegateway.monitoring.stevedore.dev/history"} {
		if !strings.Contains(all, kind) {
			t.Errorf("kubectl get stevedore lacks %s:\n%s", kind, all)
		}
	}
}
