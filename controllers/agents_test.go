package controllers

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/thanos-io/objstore"

	"github.com/stevedore-dev/stevedore/api/v1alpha1"
	"github.com/stevedore-dev/stevedore/internal/block"
	"github.com/stevedore-dev/stevedore/internal/testserver"
	"github.com/stevedore-dev/stevedore/internal/testutil/blockgen"
)

// The agent tests run real `agent store` and `agent sidecar` processes
// against real MinIO and Prometheus, with the arguments the operator rendered
// into the StatefulSets (paths and ports swapped for local ones). envtest
// runs no kubelet, so the test creates the pods the StatefulSets would have
// and points the status poller at the local agents.

var (
	agentOnce sync.Once
	agentBin  string
	agentErr  error
)

// buildAgent builds cmd/agent once per test binary (or uses STEVEDORE_AGENT).
func buildAgent(t *testing.T) string {
	t.Helper()
	agentOnce.Do(func() {
		if p := os.Getenv("STEVEDORE_AGENT"); p != "" {
			agentBin = p
			return
		}
		dir, err := os.MkdirTemp("", "stevedore-agent-")
		if err != nil {
			agentErr = err
			return
		}
		agentBin = filepath.Join(dir, "agent")
		out, err := exec.Command("go", "build", "-o", agentBin, "../cmd/agent").CombinedOutput()
		if err != nil {
			agentErr = fmt.Errorf("go build ./cmd/agent: %w\n%s", err, out)
		}
	})
	if agentErr != nil {
		t.Fatal(agentErr)
	}
	return agentBin
}

// localArgs rewrites the rendered container args for a local process:
// replace maps a flag name to its new value ("" drops the flag).
func localArgs(args []string, replace map[string]string) []string {
	var out []string
	for _, a := range args {
		name, _, _ := strings.Cut(a, "=")
		if v, ok := replace[name]; ok {
			if v != "" {
				out = append(out, name+"="+v)
			}
			continue
		}
		out = append(out, a)
	}
	return out
}

// standInPod creates the pod a StatefulSet would have created, and maps it to
// the local agent at httpAddr.
func standInPod(t *testing.T, sts *appsv1.StatefulSet, ordinal int, httpAddr string) {
	t.Helper()
	name := fmt.Sprintf("%s-%d", sts.Name, ordinal)
	pod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: sts.Namespace, Labels: sts.Spec.Template.Labels},
		Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "agent", Image: testAgentImage}}},
	}
	podURLs.Store(sts.Namespace+"/"+name, "http://"+httpAddr)
	t.Cleanup(func() { podURLs.Delete(sts.Namespace + "/" + name) })
	if err := k8s.Create(context.Background(), pod); err != nil {
		t.Fatalf("create pod %s: %v", name, err)
	}
}

func agentContainerOf(t *testing.T, sts *appsv1.StatefulSet) corev1.Container {
	t.Helper()
	for _, c := range append(sts.Spec.Template.Spec.InitContainers, sts.Spec.Template.Spec.Containers...) {
		if c.Name == "agent" {
			return c
		}
	}
	t.Fatalf("StatefulSet %s has no agent container", sts.Name)
	return corev1.Container{}
}

func getStatefulSet(t *testing.T, ns, name string) *appsv1.StatefulSet {
	t.Helper()
	var sts appsv1.StatefulSet
	eventually(t, 30*time.Second, "StatefulSet "+name, func() error {
		return k8s.Get(context.Background(), client.ObjectKey{Namespace: ns, Name: name}, &sts)
	})
	return &sts
}

// renderedObjstore writes the Bucket's rendered config where a local agent reads it.
func renderedObjstore(t *testing.T, ns, bucket string) string {
	t.Helper()
	var sec corev1.Secret
	eventually(t, 30*time.Second, "objstore Secret", func() error {
		return k8s.Get(context.Background(), client.ObjectKey{Namespace: ns, Name: objstoreSecretName(bucket)}, &sec)
	})
	return testserver.WriteFile(t, "objstore.yaml", sec.Data[objstoreKey])
}

func TestAgentStatus(t *testing.T) {
	requireEnv(t)
	agent := buildAgent(t)
	m := testserver.StartMinIO(t)
	m.CreateBucket(t, "metrics")
	ctx := context.Background()

	t.Run("store", func(t *testing.T) {
		ns := newNamespace(t)
		// Four blocks of the last day in the bucket, under the Bucket's prefix.
		bkt := m.Client(t, "metrics")
		dir := t.TempDir()
		now := time.Now().Add(-time.Hour).Truncate(2 * time.Hour).UnixMilli()
		var ids []string
		for i := range 4 {
			minT := now - int64(i+1)*2*time.Hour.Milliseconds()
			id, err := blockgen.Write(ctx, dir, blockgen.Spec{MinTime: minT, MaxTime: minT + 2*time.Hour.Milliseconds(), Series: 5, Step: 60_000, Seed: int64(i)})
			if err != nil {
				t.Fatal(err)
			}
			if _, err := blockgen.SetThanosMeta(dir, id, map[string]string{"cluster": "eu1"}, block.SourceTest); err != nil {
				t.Fatal(err)
			}
			if err := blockgen.Upload(ctx, objstore.NewPrefixedBucket(bkt, "team-a"), dir, id); err != nil {
				t.Fatal(err)
			}
			ids = append(ids, id.String())
		}

		mustKubectl(t, []byte(credsYAML(m.AccessKey, m.SecretKey)+"---\n"+fmt.Sprintf(`apiVersion: monitoring.stevedore.dev/v1alpha1
kind: Bucket
metadata:
  name: metrics
spec:
  type: S3
  s3: {bucket: metrics, endpoint: %q, insecure: true, credentials: {secretName: creds}}
  prefix: team-a
---
apiVersion: monitoring.stevedore.dev/v1alpha1
kind: StoreGateway
metadata:
  name: store
spec:
  bucketRef: {name: metrics}
  shards: 2
  syncInterval: 2s
`, m.Endpoint)), "apply", "-n", ns, "-f", "-")
		objstore := renderedObjstore(t, ns, "metrics")

		// One agent per shard, with the shard's rendered relabel config.
		for k := range 2 {
			sts := getStatefulSet(t, ns, shardName("store", int32(k)))
			c := agentContainerOf(t, sts)
			httpAddr, grpcAddr := testserver.Addr(testserver.FreePort(t)), testserver.Addr(testserver.FreePort(t))
			args := localArgs(c.Args, map[string]string{
				"--objstore.config-file": objstore,
				"--data-dir":             t.TempDir(),
				"--http-address":         httpAddr,
				"--grpc-address":         grpcAddr,
			})
			testserver.Start(t, sts.Name, agent, args)
			standInPod(t, sts, 0, httpAddr)
		}

		var g v1alpha1.StoreGateway
		eventually(t, 90*time.Second, "StoreGateway Synced", func() error {
			if err := k8s.Get(ctx, client.ObjectKey{Namespace: ns, Name: "store"}, &g); err != nil {
				return err
			}
			c := meta.FindStatusCondition(g.Status.Conditions, v1alpha1.ConditionSynced)
			if c == nil || c.Status != metav1.ConditionTrue {
				return fmt.Errorf("Synced: %+v", c)
			}
			if r := meta.FindStatusCondition(g.Status.Conditions, v1alpha1.ConditionReady); r == nil || r.Status != metav1.ConditionTrue {
				return fmt.Errorf("Ready: %+v", r)
			}
			return nil
		})
		// Each block is served by exactly one shard.
		if g.Status.Blocks != int64(len(ids)) || len(g.Status.Shards) != 2 {
			t.Errorf("blocks %d over shards %+v, want %d", g.Status.Blocks, g.Status.Shards, len(ids))
		}
		if g.Status.LastSync == nil || time.Since(g.Status.LastSync.Time) > time.Minute || g.Status.MinTime == nil || g.Status.MaxTime == nil {
			t.Errorf("status: %+v", g.Status)
		}
		out := mustKubectl(t, nil, "get", "storegateways", "-n", ns)
		t.Logf("kubectl get storegateways:\n%s", out)
		row := regexp.MustCompile(`(?m)^store\s+True\s+2/2\s+(\d+)\s+(\S+)\s+(\S+)\s+(\S+)\s+`).FindStringSubmatch(out)
		if row == nil || !strings.HasPrefix(out, "NAME") {
			t.Fatalf("kubectl get storegateways: no ready row:\n%s", out)
		}
		if n, _ := strconv.Atoi(row[1]); n == 0 {
			t.Errorf("BLOCKS column is 0")
		}
		if d, err := time.ParseDuration(row[2]); err != nil || d > time.Minute {
			t.Errorf("LAST SYNC %q, want a recent age", row[2])
		}

		// The bucket goes away: the agents' sync fails and Synced turns False
		// with their error.
		m.Stop()
		t.Cleanup(m.Start)
		eventually(t, 90*time.Second, "Synced False", func() error {
			if err := k8s.Get(ctx, client.ObjectKey{Namespace: ns, Name: "store"}, &g); err != nil {
				return err
			}
			c := meta.FindStatusCondition(g.Status.Conditions, v1alpha1.ConditionSynced)
			if c == nil || c.Status != metav1.ConditionFalse || c.Reason != ReasonSyncFailed {
				return fmt.Errorf("Synced: %+v", c)
			}
			t.Logf("Synced False: %s", c.Message)
			return nil
		})
		waitEvent(t, ns, "store", ReasonSyncFailed)
	})

	t.Run("sidecar", func(t *testing.T) {
		ns := newNamespace(t)
		mustKubectl(t, []byte(credsYAML(m.AccessKey, m.SecretKey)+"---\n"+fmt.Sprintf(`apiVersion: monitoring.stevedore.dev/v1alpha1
kind: Bucket
metadata:
  name: metrics
spec:
  type: S3
  s3: {bucket: metrics, endpoint: %q, insecure: true, credentials: {secretName: creds}}
  prefix: team-b
---
apiVersion: monitoring.stevedore.dev/v1alpha1
kind: PrometheusShipper
metadata:
  name: prom
spec:
  bucketRef: {name: metrics}
  prometheus:
    replicas: 1
    externalLabels: {cluster: eu1}
`, m.Endpoint)), "apply", "-n", ns, "-f", "-")
		objstore := renderedObjstore(t, ns, "metrics")
		sts := getStatefulSet(t, ns, "prom")
		var cm corev1.ConfigMap
		if err := k8s.Get(ctx, client.ObjectKey{Namespace: ns, Name: shipperConfigName("prom")}, &cm); err != nil {
			t.Fatal(err)
		}

		// A Prometheus with two finished blocks in its TSDB, which the sidecar ships.
		data := t.TempDir()
		now := time.Now().Add(-3 * time.Hour).Truncate(2 * time.Hour).UnixMilli()
		for i := range 2 {
			minT := now - int64(i+1)*2*time.Hour.Milliseconds()
			if _, err := blockgen.Write(ctx, data, blockgen.Spec{MinTime: minT, MaxTime: minT + 2*time.Hour.Milliseconds(), Series: 3, Step: 60_000}); err != nil {
				t.Fatal(err)
			}
		}
		prom := testserver.StartPrometheus(t, testserver.PrometheusOptions{
			DataDir:        data,
			ExternalLabels: map[string]string{"cluster": "eu1", "prometheus_replica": "prom-0"},
		})
		httpAddr, grpcAddr := testserver.Addr(testserver.FreePort(t)), testserver.Addr(testserver.FreePort(t))
		cfgDir := t.TempDir()
		tmpl := filepath.Join(cfgDir, prometheusConfigKey)
		if err := os.WriteFile(tmpl, []byte(cm.Data[prometheusConfigKey]), 0o644); err != nil {
			t.Fatal(err)
		}
		args := localArgs(agentContainerOf(t, sts).Args, map[string]string{
			"--objstore.config-file": objstore,
			"--prometheus.url":       prom.URL,
			"--tsdb.path":            data,
			"--http-address":         httpAddr,
			"--grpc-address":         grpcAddr,
			// The rendered config goes through the reloader into a scratch
			// file; the test Prometheus keeps its own config file.
			"--reloader.config-file":          tmpl,
			"--reloader.config-envsubst-file": filepath.Join(cfgDir, "out.yaml"),
		})
		testserver.Start(t, "sidecar", agent, args, "POD_NAME=prom-0")
		standInPod(t, sts, 0, httpAddr)

		var p v1alpha1.PrometheusShipper
		eventually(t, 90*time.Second, "blocks shipped", func() error {
			if err := k8s.Get(ctx, client.ObjectKey{Namespace: ns, Name: "prom"}, &p); err != nil {
				return err
			}
			for _, ct := range []string{v1alpha1.ConditionReady, v1alpha1.ConditionPrometheusHealthy, v1alpha1.ConditionShipping} {
				if c := meta.FindStatusCondition(p.Status.Conditions, ct); c == nil || c.Status != metav1.ConditionTrue {
					return fmt.Errorf("%s: %+v", ct, c)
				}
			}
			if p.Status.Uploaded < 2 {
				return fmt.Errorf("uploaded %d", p.Status.Uploaded)
			}
			return nil
		})
		if len(p.Status.Replicas) != 1 || p.Status.Replicas[0].Pod != "prom-0" || p.Status.Replicas[0].PrometheusVersion == "" ||
			p.Status.Replicas[0].ExternalLabels["prometheus_replica"] != "prom-0" || p.Status.LastUploadTime == nil {
			t.Errorf("status: %+v", p.Status)
		}
		if out, err := os.ReadFile(filepath.Join(cfgDir, "out.yaml")); err != nil || !strings.Contains(string(out), "prometheus_replica: prom-0") {
			t.Errorf("reloader output (err %v):\n%s", err, out)
		}
		out := mustKubectl(t, nil, "get", "prometheusshippers", "-n", ns)
		t.Logf("kubectl get prometheusshippers:\n%s", out)
		if !regexp.MustCompile(`(?m)^prom\s+True\s+[2-9]\s+0\s+\S+\s+`).MatchString(out) {
			t.Errorf("kubectl get prometheusshippers: want READY True, UPLOADED >= 2, PENDING 0:\n%s", out)
		}
	})
}
