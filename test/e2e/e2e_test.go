// Package e2e is Stevedore's end-to-end suite: the operator, the agents,
// MinIO, Prometheus and a Thanos Querier on a real single-node cluster
// (hack/cluster). Run it with `make e2e`; without STEVEDORE_E2E it skips.
package e2e

import (
	"fmt"
	"maps"
	"math"
	"slices"
	"strconv"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	apimeta "k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/stevedore-dev/stevedore/internal/block"

	monitoringv1alpha1 "github.com/stevedore-dev/stevedore/api/v1alpha1"
)

type metav1Condition = metav1.Condition

var storePods = map[string]string{"app.kubernetes.io/instance": "store", "app.kubernetes.io/component": "store-gateway"}

// TestEndToEnd runs the demo flow with assertions, then the day-2 operations
// an SRE performs, each building on the state the previous one left.
func TestEndToEnd(t *testing.T) {
	s := newSuite(t)
	// The operator is installed the way users install it: helm install.
	s.helmInstall()
	s.resetNamespace()
	s.applyStack(map[string]string{
		"MINIO_IMAGE": s.images["MINIO"], "PROMETHEUS_IMAGE": s.images["PROMETHEUS"],
		"THANOS_IMAGE": s.images["THANOS"], "STORE_SHARDS": "1", "MINIO_DATA": s.minioData(),
	})
	s.applyStoreOnlyQuerier()

	steps := []struct {
		name string
		fn   func(*suite)
	}{
		{"ShipsSyncsAndAnswers", (*suite).shipsSyncsAndAnswers},
		// config/samples/ applied unchanged, beside the demo stack.
		{"SamplesReachReady", (*suite).samplesReachReady},
		{"StoreGatewayPodDeleted", (*suite).storeGatewayPodDeleted},
		{"BucketCredentialsRotated", (*suite).bucketCredentialsRotated},
		{"ShardsScaledOneToThree", (*suite).shardsScaledOneToThree},
		{"HelmUpgradeKeepsResourcesAndData", (*suite).helmUpgraded},
		{"HelmUninstallLeavesCRDsAndResources", (*suite).helmUninstalled},
		// The real garbage collector, not the operator, removes the children.
		{"ResourcesDeletedAndCollected", (*suite).resourcesDeleted},
	}
	for _, st := range steps {
		if !t.Run(st.name, func(t *testing.T) {
			sub := *s
			sub.t = t
			st.fn(&sub)
		}) {
			t.Fatalf("step %s failed; later steps depend on it", st.name)
		}
	}
}

// shipsSyncsAndAnswers: Prometheus cuts blocks, the sidecar ships them with
// the right labels, the store gateway serves exactly the bucket's blocks, and
// a Thanos Querier answers through both.
func (s *suite) shipsSyncsAndAnswers() {
	s.eventually("a block shipped and synced", 8*time.Minute, func() error {
		sg, sh := s.storeGateway(), s.shipper()
		if sh.Status.Uploaded < 1 {
			return fmt.Errorf("shipper uploaded %d block(s), Ready=%s", sh.Status.Uploaded, conditionStatus(sh.Status.Conditions, "Ready"))
		}
		if sg.Status.Blocks < 1 || conditionStatus(sg.Status.Conditions, "Ready") != "True" {
			return fmt.Errorf("store gateway: %d block(s), Ready=%s", sg.Status.Blocks, conditionStatus(sg.Status.Conditions, "Ready"))
		}
		return nil
	})
	blocks, err := s.bucketBlocks()
	if err != nil {
		s.t.Fatal(err)
	}
	for id, m := range blocks {
		want := map[string]string{"cluster": "demo", "prometheus_replica": "prometheus-0"}
		if !maps.Equal(m.Thanos.Labels, want) {
			s.t.Errorf("block %s: thanos labels %v, want %v", id, m.Thanos.Labels, want)
		}
		if m.Thanos.Source != "sidecar" {
			s.t.Errorf("block %s: source %q, want sidecar", id, m.Thanos.Source)
		}
	}
	s.storeServesBucket(1)

	// The queriers find the agents through DNS SRV records, refreshed every few seconds.
	s.eventually("the querier answers for Prometheus, the sidecar and the store gateway", 2*time.Minute, func() error {
		r, err := s.query("querier", `count by (job, component) (up)`, time.Time{}, time.Time{}, 0)
		if err != nil {
			return err
		}
		got := map[string]bool{}
		for _, res := range r.Data.Result {
			got[res.Metric["job"]+"/"+res.Metric["component"]] = true
		}
		for _, want := range []string{"prometheus/", "stevedore-agent/sidecar", "stevedore-agent/store"} {
			if !got[want] {
				return fmt.Errorf("count by (job, component) (up) has no %s series: %v", want, r.Data.Result)
			}
		}
		return nil
	})
	// The store-only querier answers from the bucket alone.
	start, end := s.bucketRange(blocks)
	s.eventually("the store-only querier answers from the bucket", 2*time.Minute, func() error {
		n, err := s.samples("querier-store", start, end)
		if err != nil {
			return err
		}
		if n == 0 {
			return fmt.Errorf("no samples of up{job=\"prometheus\"} in the shipped range %s..%s", start, end)
		}
		return nil
	})
}

// storeGatewayPodDeleted: a deleted store gateway pod comes back and syncs.
func (s *suite) storeGatewayPodDeleted() {
	pods := s.pods(storePods)
	if len(pods) != 1 {
		s.t.Fatalf("%d store gateway pods, want 1", len(pods))
	}
	old := pods[0]
	deletedAt := time.Now()
	if err := s.c.Delete(s.ctx, &old); err != nil {
		s.t.Fatal(err)
	}
	s.eventually("the store gateway pod replaced and synced again", 4*time.Minute, func() error {
		pods := s.pods(storePods)
		if len(pods) != 1 || pods[0].UID == old.UID || !podReady(&pods[0]) {
			return fmt.Errorf("waiting for a new ready pod (%d pods)", len(pods))
		}
		sg := s.storeGateway()
		if sg.Status.LastSync == nil || sg.Status.LastSync.Time.Before(deletedAt) {
			return fmt.Errorf("last sync %v is before the deletion", sg.Status.LastSync)
		}
		if conditionStatus(sg.Status.Conditions, "Synced") != "True" {
			return fmt.Errorf("Synced=%s", conditionStatus(sg.Status.Conditions, "Synced"))
		}
		return nil
	})
	s.storeServesBucket(1)
}

// bucketCredentialsRotated: new credentials in the Secret (and in MinIO)
// roll every agent pod, and shipping goes on with the new key.
func (s *suite) bucketCredentialsRotated() {
	before, err := s.bucketBlocks()
	if err != nil {
		s.t.Fatal(err)
	}
	oldUIDs := map[types.UID]bool{}
	for _, sel := range []map[string]string{storePods, {"app.kubernetes.io/instance": "prometheus"}} {
		for _, p := range s.pods(sel) {
			oldUIDs[p.UID] = true
		}
	}
	rotatedAt := time.Now()
	newKey := "rotated-" + strconv.FormatInt(rotatedAt.UnixNano(), 36)
	var sec corev1.Secret
	if err := s.c.Get(s.ctx, client.ObjectKey{Namespace: s.ns, Name: "minio-credentials"}, &sec); err != nil {
		s.t.Fatal(err)
	}
	sec.Data["secret_key"] = []byte(newKey)
	if err := s.c.Update(s.ctx, &sec); err != nil {
		s.t.Fatal(err)
	}
	// MinIO reads its root credentials at start: restart it on the same data.
	var minioDeploy appsv1.Deployment
	if err := s.c.Get(s.ctx, client.ObjectKey{Namespace: s.ns, Name: "minio"}, &minioDeploy); err != nil {
		s.t.Fatal(err)
	}
	patch := client.MergeFrom(minioDeploy.DeepCopy())
	if minioDeploy.Spec.Template.Annotations == nil {
		minioDeploy.Spec.Template.Annotations = map[string]string{}
	}
	minioDeploy.Spec.Template.Annotations["stevedore-e2e/rotated-at"] = rotatedAt.Format(time.RFC3339Nano)
	if err := s.c.Patch(s.ctx, &minioDeploy, patch); err != nil {
		s.t.Fatal(err)
	}

	s.eventually("every agent pod rolled onto the new credentials", 5*time.Minute, func() error {
		for _, sel := range []map[string]string{storePods, {"app.kubernetes.io/instance": "prometheus"}} {
			for _, p := range s.pods(sel) {
				if oldUIDs[p.UID] {
					return fmt.Errorf("pod %s still the one from before the rotation", p.Name)
				}
				if !podReady(&p) {
					return fmt.Errorf("pod %s not ready", p.Name)
				}
			}
		}
		var b monitoringv1alpha1.Bucket
		if err := s.c.Get(s.ctx, client.ObjectKey{Namespace: s.ns, Name: "metrics"}, &b); err != nil {
			return err
		}
		if st := conditionStatus(b.Status.Conditions, "Reachable"); st != "True" {
			return fmt.Errorf("Bucket Reachable=%s", st)
		}
		return nil
	})
	s.eventually("a block cut after the rotation shipped with the new key", 6*time.Minute, func() error {
		after, err := s.bucketBlocks()
		if err != nil {
			return err
		}
		for id := range before {
			if _, ok := after[id]; !ok {
				return fmt.Errorf("block %s shipped before the rotation is gone from the bucket", id)
			}
		}
		for id, m := range after {
			if _, old := before[id]; !old && time.UnixMilli(m.MinTime).After(rotatedAt) {
				return nil
			}
		}
		return fmt.Errorf("%d block(s) in the bucket, none cut after the rotation", len(after))
	})
	s.storeServesBucket(1)
}

// shardsScaledOneToThree: the blocks are re-partitioned by hashmod across
// three shards, each block served by exactly one, and the store gateways
// answer the same range as before.
func (s *suite) shardsScaledOneToThree() {
	blocks, err := s.bucketBlocks()
	if err != nil {
		s.t.Fatal(err)
	}
	start, end := s.bucketRange(blocks)
	// A block uploaded since the last step must be served before the
	// baseline is taken, or the baseline would miss its samples.
	s.eventually("the store gateway serves every block of the baseline range", 2*time.Minute, func() error {
		served := map[string]bool{}
		for _, p := range s.pods(storePods) {
			ids, err := s.podBlocks(&p)
			if err != nil {
				return err
			}
			for _, id := range ids {
				served[id] = true
			}
		}
		for id := range blocks {
			if !served[id] {
				return fmt.Errorf("block %s not served yet", id)
			}
		}
		return nil
	})
	baseline, err := s.samples("querier-store", start, end)
	if err != nil {
		s.t.Fatal(err)
	}
	if baseline == 0 {
		s.t.Fatal("no samples in the shipped range before scaling")
	}
	sg := s.storeGateway()
	patch := client.MergeFrom(sg.DeepCopy())
	sg.Spec.Shards = 3
	if err := s.c.Patch(s.ctx, sg, patch); err != nil {
		s.t.Fatal(err)
	}
	// Watch answers while the shards roll: a transient dip is logged, the
	// final answer is asserted.
	done := make(chan struct{})
	dips := make(chan int, 1)
	go func() {
		low := baseline
		defer func() { dips <- low }()
		for {
			select {
			case <-done:
				return
			case <-time.After(3 * time.Second):
			}
			if r, err := s.query("querier-store", `up{job="prometheus"}`, start, end, 5*time.Second); err == nil {
				low = min(low, countValues(r))
			}
		}
	}()
	s.eventually("three shards ready and synced", 5*time.Minute, func() error {
		sg := s.storeGateway()
		if sg.Status.ObservedGeneration != sg.Generation || sg.Status.ReadyShards != "3/3" {
			return fmt.Errorf("readyShards %q at generation %d/%d", sg.Status.ReadyShards, sg.Status.ObservedGeneration, sg.Generation)
		}
		return s.checkStoreServesBucket(3)
	})
	close(done)
	if low := <-dips; low < baseline {
		s.t.Logf("while the shards rolled, the store-only querier briefly saw %d of %d samples", low, baseline)
	}
	// The querier may still be discovering the new shards' pods.
	s.eventually("the store-only querier answers the same range as before scaling", 2*time.Minute, func() error {
		got, err := s.samples("querier-store", start, end)
		if err != nil {
			return err
		}
		if got != baseline {
			return fmt.Errorf("%d samples of up{job=\"prometheus\"} in %s..%s, before scaling %d", got, start, end, baseline)
		}
		return nil
	})
}

// resourcesDeleted: deleting the custom resources garbage-collects every
// object the operator created for them.
func (s *suite) resourcesDeleted() {
	for _, obj := range []client.Object{
		&monitoringv1alpha1.StoreGateway{ObjectMeta: metav1.ObjectMeta{Namespace: s.ns, Name: "store"}},
		&monitoringv1alpha1.PrometheusShipper{ObjectMeta: metav1.ObjectMeta{Namespace: s.ns, Name: "prometheus"}},
		&monitoringv1alpha1.Bucket{ObjectMeta: metav1.ObjectMeta{Namespace: s.ns, Name: "metrics"}},
	} {
		if err := s.c.Delete(s.ctx, obj); err != nil {
			s.t.Fatalf("delete %T %s: %v", obj, obj.GetName(), err)
		}
	}
	managed := client.MatchingLabels{"app.kubernetes.io/managed-by": "stevedore-operator"}
	s.eventually("every object the operator made garbage-collected", 3*time.Minute, func() error {
		lists := map[string]client.ObjectList{
			"statefulsets": &appsv1.StatefulSetList{}, "services": &corev1.ServiceList{},
			"configmaps": &corev1.ConfigMapList{}, "secrets": &corev1.SecretList{},
			"poddisruptionbudgets": &policyv1.PodDisruptionBudgetList{}, "pods": &corev1.PodList{},
		}
		var left []string
		for _, kind := range slices.Sorted(maps.Keys(lists)) {
			if err := s.c.List(s.ctx, lists[kind], client.InNamespace(s.ns), managed); err != nil {
				return err
			}
			if n := apimeta.LenList(lists[kind]); n > 0 {
				left = append(left, fmt.Sprintf("%d %s", n, kind))
			}
		}
		if len(left) > 0 {
			return fmt.Errorf("still there: %v", left)
		}
		return nil
	})
}

// storeServesBucket asserts that the store gateway pods together serve
// exactly the bucket's blocks, each block by exactly one shard.
func (s *suite) storeServesBucket(shards int) {
	s.t.Helper()
	s.eventually("store gateways serve exactly the bucket's blocks", 2*time.Minute, func() error {
		return s.checkStoreServesBucket(shards)
	})
}

func (s *suite) checkStoreServesBucket(shards int) error {
	blocks, err := s.bucketBlocks()
	if err != nil {
		return err
	}
	pods := s.pods(storePods)
	if len(pods) != shards {
		return fmt.Errorf("%d store gateway pods, want %d", len(pods), shards)
	}
	servedBy := map[string][]string{}
	for i := range pods {
		ids, err := s.podBlocks(&pods[i])
		if err != nil {
			return err
		}
		for _, id := range ids {
			servedBy[id] = append(servedBy[id], pods[i].Name)
		}
	}
	for id := range blocks {
		if len(servedBy[id]) != 1 {
			return fmt.Errorf("block %s served by %v, want exactly one shard", id, servedBy[id])
		}
	}
	for id := range servedBy {
		if _, ok := blocks[id]; !ok {
			return fmt.Errorf("block %s served but not in the bucket", id)
		}
	}
	return nil
}

// samples counts the values of up{job="prometheus"} over a range at a 5 s step.
func (s *suite) samples(querier string, start, end time.Time) (int, error) {
	r, err := s.query(querier, `up{job="prometheus"}`, start, end, 5*time.Second)
	if err != nil {
		return 0, err
	}
	return countValues(r), nil
}

func countValues(r *promResult) int {
	n := 0
	for _, res := range r.Data.Result {
		n += len(res.Values)
	}
	return n
}

// bucketRange is the time range the bucket's blocks cover, trimmed to whole
// seconds inside it.
func (s *suite) bucketRange(blocks map[string]block.Meta) (time.Time, time.Time) {
	s.t.Helper()
	if len(blocks) == 0 {
		s.t.Fatal("no blocks in the bucket")
	}
	minT, maxT := int64(math.MaxInt64), int64(math.MinInt64)
	for _, m := range blocks {
		minT, maxT = min(minT, m.MinTime), max(maxT, m.MaxTime)
	}
	start := time.UnixMilli(minT).Truncate(time.Second).Add(time.Second)
	end := time.UnixMilli(maxT - 1).Truncate(time.Second)
	return start, end
}

func podReady(p *corev1.Pod) bool {
	if p.DeletionTimestamp != nil {
		return false
	}
	for _, c := range p.Status.Conditions {
		if c.Type == corev1.PodReady {
			return c.Status == corev1.ConditionTrue
		}
	}
	return false
}

// resetNamespace removes what an earlier run (or `make demo`) left in the
// namespace, so the suite starts from nothing.
func (s *suite) resetNamespace() {
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: s.ns}}
	if err := s.c.Delete(s.ctx, ns); err != nil && !apierrors.IsNotFound(err) {
		s.t.Fatal(err)
	}
	s.eventually("namespace "+s.ns+" absent", 3*time.Minute, func() error {
		err := s.c.Get(s.ctx, client.ObjectKeyFromObject(ns), ns)
		if apierrors.IsNotFound(err) {
			return nil
		}
		if err != nil {
			return fmt.Errorf("get namespace: %w", err)
		}
		return fmt.Errorf("still there, phase %s", ns.Status.Phase)
	})
}
