package controllers

import (
	"errors"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/tools/events"

	"github.com/stevedore-dev/stevedore/api/v1alpha1"
	"github.com/stevedore-dev/stevedore/internal/agentstatus"
)

// The status tests fold agent documents into resource status; they need no
// server. The end-to-end path (real agents, real poller) is in agents_test.go.

func storePod(name string, shard string) corev1.Pod {
	return corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: name, Labels: map[string]string{LabelShard: shard}}}
}

func storeObs(ready bool, blocks int64, lastSync time.Time, minT, maxT int64, syncErr string) observation {
	return observation{Time: time.Now(), Status: &agentstatus.Status{
		Component: agentstatus.ComponentStore, Ready: ready,
		Store: &agentstatus.StoreStatus{
			BlocksLoaded: blocks, LastSyncTime: &lastSync, LastSyncError: syncErr, InitialSyncDone: true,
			MinTime: minT, MaxTime: maxT, IndexHeaderBytes: blocks * 1000,
		},
	}}
}

func TestStoreGatewayStatus(t *testing.T) {
	rec := events.NewFakeRecorder(100)
	r := &StoreGatewayReconciler{status: statusWriter{recorder: rec, metrics: newMetrics(nil), kind: "StoreGateway"}}
	g := &v1alpha1.StoreGateway{ObjectMeta: metav1.ObjectMeta{Name: "s", Generation: 3}, Spec: v1alpha1.StoreGatewaySpec{Shards: 2}}
	t0 := time.Date(2026, 1, 1, 12, 0, 0, 0, time.UTC)
	pods := []corev1.Pod{storePod("s-shard-0-0", "0"), storePod("s-shard-0-1", "0"), storePod("s-shard-1-0", "1")}

	obs := map[string]observation{
		"s-shard-0-0": storeObs(true, 10, t0.Add(time.Minute), 1000_000, 9000_000, ""),
		"s-shard-0-1": storeObs(true, 8, t0, 2000_000, 8000_000, ""),
		"s-shard-1-0": storeObs(true, 5, t0.Add(2*time.Minute), 500_000, 9500_000, ""),
	}
	r.updateStatus(g, pods, obs, nil)
	st := g.Status
	if st.ReadyShards != "2/2" || st.Blocks != 8+5 {
		t.Errorf("readyShards %q blocks %d, want 2/2 and 13 (the least advanced replica per shard)", st.ReadyShards, st.Blocks)
	}
	if !st.LastSync.Time.Equal(t0) || st.MinTime.Unix() != 500 || st.MaxTime.Unix() != 9500 {
		t.Errorf("lastSync %v minTime %v maxTime %v", st.LastSync, st.MinTime, st.MaxTime)
	}
	if s0 := st.Shards[0]; s0.ReadyReplicas != 2 || s0.Blocks != 8 || s0.IndexHeaderBytes != 10000 || s0.LastError != "" {
		t.Errorf("shard 0: %+v", s0)
	}
	for _, ct := range []string{v1alpha1.ConditionSynced, v1alpha1.ConditionReady} {
		if c := meta.FindStatusCondition(st.Conditions, ct); c == nil || c.Status != metav1.ConditionTrue || c.ObservedGeneration != 3 {
			t.Errorf("%s: %+v", ct, c)
		}
	}

	// Shard 1 loses its bucket: Synced turns False with the agent's error.
	obs["s-shard-1-0"] = storeObs(false, 5, t0.Add(2*time.Minute), 500_000, 9500_000, "sync: list bucket: connection refused")
	r.updateStatus(g, pods, obs, nil)
	c := meta.FindStatusCondition(g.Status.Conditions, v1alpha1.ConditionSynced)
	if c.Status != metav1.ConditionFalse || c.Reason != ReasonSyncFailed || !strings.Contains(c.Message, "shard 1: pod s-shard-1-0: sync: list bucket: connection refused") {
		t.Errorf("Synced: %+v", c)
	}
	if g.Status.ReadyShards != "1/2" {
		t.Errorf("readyShards %q", g.Status.ReadyShards)
	}
	if ev := drain(rec); !strings.Contains(ev, "Warning SyncFailed") {
		t.Errorf("no SyncFailed warning event in %q", ev)
	}

	// An agent that does not answer: Unknown, with the poll error.
	obs["s-shard-1-0"] = observation{Err: errors.New("get agent status: context deadline exceeded")}
	r.updateStatus(g, pods, obs, nil)
	c = meta.FindStatusCondition(g.Status.Conditions, v1alpha1.ConditionSynced)
	if c.Status != metav1.ConditionUnknown || c.Reason != ReasonAgentUnreachable || !strings.Contains(c.Message, "deadline exceeded") {
		t.Errorf("Synced: %+v", c)
	}
}

func TestShipperStatus(t *testing.T) {
	rec := events.NewFakeRecorder(100)
	r := &PrometheusShipperReconciler{status: statusWriter{recorder: rec, metrics: newMetrics(nil), kind: "PrometheusShipper"}}
	two := int32(2)
	p := &v1alpha1.PrometheusShipper{ObjectMeta: metav1.ObjectMeta{Name: "p"}, Spec: v1alpha1.PrometheusShipperSpec{Prometheus: v1alpha1.ManagedPrometheus{Replicas: &two}}}
	pods := []corev1.Pod{{ObjectMeta: metav1.ObjectMeta{Name: "p-1"}}, {ObjectMeta: metav1.ObjectMeta{Name: "p-0"}}}
	up := time.Date(2026, 1, 1, 12, 0, 0, 500, time.UTC)
	sidecar := func(uploaded, pending int64, promOK bool, lastErr string) observation {
		return observation{Time: time.Now(), Status: &agentstatus.Status{Component: agentstatus.ComponentSidecar, Ready: true, Sidecar: &agentstatus.SidecarStatus{
			PrometheusURL: "http://localhost:9090", PrometheusReachable: promOK, PrometheusVersion: "3.15.0",
			ExternalLabels: map[string]string{"cluster": "eu1"}, UploadsEnabled: true,
			Uploaded: uploaded, Pending: pending, LastUploadTime: &up, LastError: lastErr,
		}}}
	}
	obs := map[string]observation{"p-0": sidecar(3, 1, true, ""), "p-1": sidecar(2, 0, true, "")}
	r.updateStatus(p, pods, obs, nil)
	st := p.Status
	if st.ReadyReplicas != 2 || st.Uploaded != 5 || st.Pending != 1 || len(st.Replicas) != 2 || st.Replicas[0].Pod != "p-0" {
		t.Errorf("status: %+v", st)
	}
	if !st.LastUploadTime.Time.Equal(up.Truncate(time.Second)) || st.Replicas[0].PrometheusVersion != "3.15.0" {
		t.Errorf("lastUpload %v replica %+v", st.LastUploadTime, st.Replicas[0])
	}
	for _, ct := range []string{v1alpha1.ConditionReady, v1alpha1.ConditionPrometheusHealthy, v1alpha1.ConditionShipping} {
		if c := meta.FindStatusCondition(st.Conditions, ct); c == nil || c.Status != metav1.ConditionTrue {
			t.Errorf("%s: %+v", ct, c)
		}
	}
	obs["p-1"] = sidecar(2, 4, false, "upload 01J...: connection refused")
	r.updateStatus(p, pods, obs, nil)
	for ct, reason := range map[string]string{
		v1alpha1.ConditionReady:             ReasonNotReady,
		v1alpha1.ConditionPrometheusHealthy: ReasonPrometheusDown,
		v1alpha1.ConditionShipping:          ReasonUploadFailed,
	} {
		if c := meta.FindStatusCondition(p.Status.Conditions, ct); c == nil || c.Status != metav1.ConditionFalse || c.Reason != reason {
			t.Errorf("%s: %+v, want False %s", ct, c, reason)
		}
	}
}

func drain(rec *events.FakeRecorder) string {
	var out []string
	for {
		select {
		case e := <-rec.Events:
			out = append(out, e)
		default:
			return strings.Join(out, "\n")
		}
	}
}

// TestTimeRangeFold: the served time range spans every shard that has
// blocks; a shard without blocks (nil) leaves it alone, in either order. A nil
// used to win maxTime, so one empty shard blanked MAX TIME in kubectl get.
func TestTimeRangeFold(t *testing.T) {
	early := &metav1.Time{Time: time.Unix(1000, 0)}
	late := &metav1.Time{Time: time.Unix(2000, 0)}
	for _, tc := range []struct {
		name             string
		a, b             *metav1.Time
		wantMin, wantMax *metav1.Time
	}{
		{"both nil", nil, nil, nil, nil},
		{"nil first", nil, early, early, early},
		{"nil second", early, nil, early, early},
		{"ordered", early, late, early, late},
		{"reversed", late, early, early, late},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := minTime(tc.a, tc.b); got != tc.wantMin {
				t.Errorf("minTime = %v, want %v", got, tc.wantMin)
			}
			if got := maxTime(tc.a, tc.b); got != tc.wantMax {
				t.Errorf("maxTime = %v, want %v", got, tc.wantMax)
			}
		})
	}
}
