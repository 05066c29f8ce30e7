package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/minio/minio-go/v7"
	"github.com/minio/minio-go/v7/pkg/credentials"
	corev1 "k8s.io/api/core/v1"
	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/config"
	"sigs.k8s.io/yaml"

	"github.com/stevedore-dev/stevedore/internal/block"
	"github.com/stevedore-dev/stevedore/internal/storegw"

	monitoringv1alpha1 "github.com/stevedore-dev/stevedore/api/v1alpha1"
)

const fieldOwner = "stevedore-e2e"

// suite is the state the ordered steps of the end-to-end test share.
type suite struct {
	t      *testing.T
	ctx    context.Context
	c      client.Client
	ns     string
	images map[string]string
	http   *http.Client
}

func newSuite(t *testing.T) *suite {
	t.Helper()
	if os.Getenv("STEVEDORE_E2E") == "" {
		t.Skip("end-to-end suite: run it with make e2e (hack/e2e.sh brings up the cluster, images and operator)")
	}
	images := map[string]string{}
	for _, k := range []string{"MINIO", "PROMETHEUS", "THANOS", "AGENT"} {
		v := os.Getenv("STEVEDORE_E2E_" + k + "_IMAGE")
		if v == "" {
			t.Fatalf("STEVEDORE_E2E_%s_IMAGE is not set (hack/demo.sh install writes it to bin/e2e.env)", k)
		}
		images[k] = v
	}
	cfg, err := config.GetConfig()
	if err != nil {
		t.Fatalf("kubeconfig: %v", err)
	}
	scheme := runtime.NewScheme()
	for _, add := range []func(*runtime.Scheme) error{clientgoscheme.AddToScheme, apiextensionsv1.AddToScheme, monitoringv1alpha1.AddToScheme} {
		if err := add(scheme); err != nil {
			t.Fatal(err)
		}
	}
	c, err := client.New(cfg, client.Options{Scheme: scheme})
	if err != nil {
		t.Fatalf("client: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	return &suite{t: t, ctx: ctx, c: c, ns: "stevedore-demo", images: images, http: &http.Client{Timeout: 10 * time.Second}}
}

// applyStack applies hack/demo/stack.yaml, the manifests `make demo` uses,
// with its variables filled in.
func (s *suite) applyStack(vars map[string]string) {
	s.t.Helper()
	raw, err := os.ReadFile("../../hack/demo/stack.yaml")
	if err != nil {
		s.t.Fatal(err)
	}
	text := os.Expand(string(raw), func(k string) string {
		v, ok := vars[k]
		if !ok {
			s.t.Fatalf("stack.yaml uses ${%s}, which the suite does not set", k)
		}
		return v
	})
	for _, doc := range strings.Split(text, "\n---\n") {
		u := &unstructured.Unstructured{}
		if err := yaml.Unmarshal([]byte(doc), &u.Object); err != nil {
			s.t.Fatalf("parse stack document: %v", err)
		}
		if len(u.Object) == 0 {
			continue
		}
		if err := s.c.Apply(s.ctx, client.ApplyConfigurationFromUnstructured(u), client.FieldOwner(fieldOwner), client.ForceOwnership); err != nil {
			s.t.Fatalf("apply %s %s: %v", u.GetKind(), u.GetName(), err)
		}
	}
}

// eventually retries check until it returns nil, logging progress every 30 s.
func (s *suite) eventually(what string, timeout time.Duration, check func() error) {
	s.t.Helper()
	start := time.Now()
	last := start
	for {
		err := check()
		if err == nil {
			s.t.Logf("%s (after %s)", what, time.Since(start).Round(time.Second))
			return
		}
		if time.Since(start) > timeout {
			s.t.Fatalf("%s: not after %s: %v", what, timeout, err)
		}
		if time.Since(last) > 30*time.Second {
			s.t.Logf("  waiting for %s (%s): %v", what, time.Since(start).Round(time.Second), err)
			last = time.Now()
		}
		select {
		case <-s.ctx.Done():
			s.t.Fatal(s.ctx.Err())
		case <-time.After(2 * time.Second):
		}
	}
}

func (s *suite) storeGateway() *monitoringv1alpha1.StoreGateway {
	s.t.Helper()
	var sg monitoringv1alpha1.StoreGateway
	if err := s.c.Get(s.ctx, client.ObjectKey{Namespace: s.ns, Name: "store"}, &sg); err != nil {
		s.t.Fatalf("get storegateway: %v", err)
	}
	return &sg
}

func (s *suite) shipper() *monitoringv1alpha1.PrometheusShipper {
	s.t.Helper()
	var p monitoringv1alpha1.PrometheusShipper
	if err := s.c.Get(s.ctx, client.ObjectKey{Namespace: s.ns, Name: "prometheus"}, &p); err != nil {
		s.t.Fatalf("get prometheusshipper: %v", err)
	}
	return &p
}

func conditionStatus(conds []metav1Condition, typ string) string {
	for _, c := range conds {
		if c.Type == typ {
			return string(c.Status)
		}
	}
	return "Unknown"
}

// serviceIP is a Service's ClusterIP; the host routes the Service range to
// the node, where kube-proxy forwards it.
func (s *suite) serviceIP(name string) string {
	s.t.Helper()
	var svc corev1.Service
	if err := s.c.Get(s.ctx, client.ObjectKey{Namespace: s.ns, Name: name}, &svc); err != nil {
		s.t.Fatalf("get service %s: %v", name, err)
	}
	return svc.Spec.ClusterIP
}

func (s *suite) secretValue(name, key string) string {
	s.t.Helper()
	var sec corev1.Secret
	if err := s.c.Get(s.ctx, client.ObjectKey{Namespace: s.ns, Name: name}, &sec); err != nil {
		s.t.Fatalf("get secret %s: %v", name, err)
	}
	return string(sec.Data[key])
}

// bucketBlocks lists the complete blocks (meta.json present) in the bucket,
// through MinIO's Service with the current credentials.
func (s *suite) bucketBlocks() (map[string]block.Meta, error) {
	mc, err := minio.New(s.serviceIP("minio")+":9000", &minio.Options{
		Creds: credentials.NewStaticV4(s.secretValue("minio-credentials", "access_key"), s.secretValue("minio-credentials", "secret_key"), ""),
	})
	if err != nil {
		return nil, err
	}
	out := map[string]block.Meta{}
	for obj := range mc.ListObjects(s.ctx, "metrics", minio.ListObjectsOptions{Recursive: true}) {
		if obj.Err != nil {
			return nil, fmt.Errorf("list bucket: %w", obj.Err)
		}
		dir, file, ok := strings.Cut(obj.Key, "/")
		if !ok || file != "meta.json" {
			continue
		}
		o, err := mc.GetObject(s.ctx, "metrics", obj.Key, minio.GetObjectOptions{})
		if err != nil {
			return nil, err
		}
		body, err := io.ReadAll(o)
		_ = o.Close()
		if err != nil {
			return nil, fmt.Errorf("read %s: %w", obj.Key, err)
		}
		var m block.Meta
		if err := json.Unmarshal(body, &m); err != nil {
			return nil, fmt.Errorf("parse %s: %w", obj.Key, err)
		}
		out[dir] = m
	}
	return out, nil
}

// podBlocks asks one store gateway pod which blocks it serves.
func (s *suite) podBlocks(pod *corev1.Pod) ([]string, error) {
	var resp storegw.BlocksResponse
	if err := s.getJSON("http://"+pod.Status.PodIP+":10902"+storegw.BlocksPath, &resp); err != nil {
		return nil, fmt.Errorf("pod %s: %w", pod.Name, err)
	}
	ids := make([]string, 0, len(resp.Data.Blocks))
	for _, m := range resp.Data.Blocks {
		ids = append(ids, m.ULID.String())
	}
	return ids, nil
}

func (s *suite) getJSON(u string, into any) error {
	req, err := http.NewRequestWithContext(s.ctx, http.MethodGet, u, nil)
	if err != nil {
		return err
	}
	resp, err := s.http.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return err
	}
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("GET %s: %s: %s", u, resp.Status, bytes.TrimSpace(body))
	}
	return json.Unmarshal(body, into)
}

// promResult is the part of a Prometheus query API answer the suite reads.
type promResult struct {
	Status string `json:"status"`
	Data   struct {
		ResultType string `json:"resultType"`
		Result     []struct {
			Metric map[string]string `json:"metric"`
			Value  []any             `json:"value"`
			Values [][]any           `json:"values"`
		} `json:"result"`
	} `json:"data"`
	Warnings []string `json:"warnings"`
}

// query runs a PromQL query against a querier Service: instant when step is
// zero, else a range query.
func (s *suite) query(svc, q string, start, end time.Time, step time.Duration) (*promResult, error) {
	v := url.Values{"query": {q}}
	path := "/api/v1/query"
	if step > 0 {
		path = "/api/v1/query_range"
		v.Set("start", fmt.Sprint(start.Unix()))
		v.Set("end", fmt.Sprint(end.Unix()))
		v.Set("step", step.String())
	}
	var r promResult
	if err := s.getJSON("http://"+s.serviceIP(svc)+":9090"+path+"?"+v.Encode(), &r); err != nil {
		return nil, err
	}
	if r.Status != "success" {
		return nil, fmt.Errorf("query %q: status %s", q, r.Status)
	}
	if len(r.Warnings) > 0 {
		return nil, fmt.Errorf("query %q: warnings %v", q, r.Warnings)
	}
	return &r, nil
}

func (s *suite) pods(selector map[string]string) []corev1.Pod {
	s.t.Helper()
	var list corev1.PodList
	if err := s.c.List(s.ctx, &list, client.InNamespace(s.ns), client.MatchingLabels(selector)); err != nil {
		s.t.Fatalf("list pods: %v", err)
	}
	return list.Items
}

// minioData prepares an empty MinIO drive on the node with the "metrics"
// bucket in it (MinIO serves top-level directories as buckets), owned by the
// images' nonroot user.
func (s *suite) minioData() string {
	s.t.Helper()
	dir := os.Getenv("STEVEDORE_CLUSTER_DIR")
	if dir == "" {
		s.t.Fatal("STEVEDORE_CLUSTER_DIR is not set (hack/demo.sh install writes it to bin/e2e.env)")
	}
	data := filepath.Join(dir, "volumes", "minio")
	if err := os.RemoveAll(data); err != nil {
		s.t.Fatal(err)
	}
	if err := os.MkdirAll(filepath.Join(data, "metrics"), 0o755); err != nil {
		s.t.Fatal(err)
	}
	for _, p := range []string{data, filepath.Join(data, "metrics")} {
		if err := os.Chown(p, nonrootUID, nonrootUID); err != nil {
			s.t.Fatal(err)
		}
	}
	return data
}

const nonrootUID = 65532

// applyStoreOnlyQuerier deploys a second Thanos Querier that sees only the
// store gateways, so answers from the bucket can be told apart from the
// sidecar's.
func (s *suite) applyStoreOnlyQuerier() {
	s.t.Helper()
	labels := map[string]any{"app": "querier-store"}
	objs := []map[string]any{
		{
			"apiVersion": "apps/v1", "kind": "Deployment",
			"metadata": map[string]any{"name": "querier-store", "namespace": s.ns},
			"spec": map[string]any{
				"selector": map[string]any{"matchLabels": labels},
				"template": map[string]any{
					"metadata": map[string]any{"labels": labels},
					"spec": map[string]any{"containers": []any{map[string]any{
						"name": "thanos", "image": s.images["THANOS"], "imagePullPolicy": "IfNotPresent",
						"args": []any{
							"query", "--http-address=0.0.0.0:9090", "--grpc-address=0.0.0.0:10901",
							"--endpoint=dnssrv+_grpc._tcp.store." + s.ns + ".svc.cluster.local",
							"--store.sd-dns-interval=5s",
						},
						"ports": []any{map[string]any{"name": "http", "containerPort": 9090}},
					}}},
				},
			},
		},
		{
			"apiVersion": "v1", "kind": "Service",
			"metadata": map[string]any{"name": "querier-store", "namespace": s.ns},
			"spec":     map[string]any{"selector": labels, "ports": []any{map[string]any{"name": "http", "port": 9090, "targetPort": "http"}}},
		},
	}
	for _, o := range objs {
		u := &unstructured.Unstructured{Object: o}
		if err := s.c.Apply(s.ctx, client.ApplyConfigurationFromUnstructured(u), client.FieldOwner(fieldOwner), client.ForceOwnership); err != nil {
			s.t.Fatalf("apply %s: %v", u.GetName(), err)
		}
	}
}
