package controllers

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/utils/ptr"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/config"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"

	"github.com/stevedore-dev/stevedore/api/v1alpha1"
	"github.com/stevedore-dev/stevedore/internal/testserver"
)

func TestParseWatchNamespaces(t *testing.T) {
	for _, tc := range []struct {
		in      string
		want    []string
		wantErr string
	}{
		{in: "", want: nil},
		{in: "  ", want: nil},
		{in: "a", want: []string{"a"}},
		{in: "team-a, team-b", want: []string{"team-a", "team-b"}},
		{in: "a,,b", wantErr: "item 2 is empty"},
		{in: "a,", wantErr: "item 2 is empty"},
		{in: "Team-A", wantErr: `"Team-A" is not a valid namespace name`},
		{in: "a_b", wantErr: `"a_b" is not a valid namespace name`},
		{in: strings.Repeat("x", 64), wantErr: "is not a valid namespace name"},
		{in: "a,b,a", wantErr: `"a" is listed twice`},
	} {
		t.Run(tc.in, func(t *testing.T) {
			got, err := ParseWatchNamespaces(tc.in)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("ParseWatchNamespaces(%q) = %v, %v; want error containing %q", tc.in, got, err, tc.wantErr)
				}
				return
			}
			if err != nil || fmt.Sprint(got) != fmt.Sprint(tc.want) || len(got) != len(tc.want) {
				t.Fatalf("ParseWatchNamespaces(%q) = %q, %v; want %q", tc.in, got, err, tc.want)
			}
		})
	}
}

// The namespaces of TestWatchNamespaces. The suite's manager watches every
// namespace but these two (suiteCacheOptions), so that only the
// namespace-scoped manager of that test can reconcile anything in them.
const (
	scopedWatchedNS = "scoped-watched"
	scopedOtherNS   = "scoped-other"
)

// suiteCacheOptions are CacheOptions for the suite's manager: all namespaces
// except those TestWatchNamespaces keeps for its own manager.
func suiteCacheOptions() cache.Options {
	opts := CacheOptions()
	opts.DefaultNamespaces = map[string]cache.Config{cache.AllNamespaces: {FieldSelector: fields.AndSelectors(
		fields.OneTermNotEqualSelector("metadata.namespace", scopedWatchedNS),
		fields.OneTermNotEqualSelector("metadata.namespace", scopedOtherNS),
	)}}
	return opts
}

// TestWatchNamespaces runs a second manager as `manager
// --watch-namespaces=scoped-watched` does: a Bucket there is reconciled (its
// Ready condition says the credentials Secret is missing), while a Bucket in
// another namespace, created first, is left alone and cannot even be read
// from the manager's cache.
func TestWatchNamespaces(t *testing.T) {
	requireEnv(t)
	ctx := context.Background()
	namespaces, err := ParseWatchNamespaces(scopedWatchedNS)
	if err != nil {
		t.Fatal(err)
	}
	for _, ns := range []string{scopedOtherNS, scopedWatchedNS} {
		if err := k8s.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}); err != nil && !apierrors.IsAlreadyExists(err) {
			t.Fatalf("create namespace %s: %v", ns, err)
		}
	}
	endpoint := testserver.Addr(testserver.FreePort(t))
	// The Bucket outside the watched namespace comes first, so a manager
	// that watched it would reconcile it before the watched one.
	for _, ns := range []string{scopedOtherNS, scopedWatchedNS} {
		mustKubectl(t, []byte(bucketYAML("b", "metrics", endpoint, false)), "apply", "-n", ns, "-f", "-")
		t.Cleanup(func() {
			_ = k8s.Delete(ctx, &v1alpha1.Bucket{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "b"}})
		})
	}

	mgr, err := ctrl.NewManager(testEnv.Config, ctrl.Options{
		Scheme:                 testScheme,
		Metrics:                metricsserver.Options{BindAddress: "0"},
		HealthProbeBindAddress: "0",
		Cache:                  CacheOptions(namespaces...),
		// The suite's manager already registered controllers of these names.
		Controller: config.Controller{SkipNameValidation: ptr.To(true)},
	})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := setup(mgr, Options{AgentImage: testAgentImage, Registerer: prometheus.NewRegistry()}); err != nil {
		t.Fatal(err)
	}
	mctx, cancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	wg.Go(func() {
		if err := mgr.Start(mctx); err != nil {
			t.Errorf("namespace-scoped manager: %v", err)
		}
	})
	t.Cleanup(func() { cancel(); wg.Wait() })

	_, c := waitBucketCondition(t, scopedWatchedNS, "b", v1alpha1.ConditionReady, metav1.ConditionFalse, 30*time.Second)
	if c.Reason != ReasonSecretNotFound {
		t.Errorf("watched Bucket: Ready %s %q, want %s", c.Reason, c.Message, ReasonSecretNotFound)
	}

	var other v1alpha1.Bucket
	if err := k8s.Get(ctx, client.ObjectKey{Namespace: scopedOtherNS, Name: "b"}, &other); err != nil {
		t.Fatal(err)
	}
	if len(other.Status.Conditions) > 0 || other.Status.ObservedGeneration != 0 || len(other.Finalizers) > 0 {
		t.Errorf("Bucket outside the watched namespaces was reconciled: finalizers %v, status %+v", other.Finalizers, other.Status)
	}
	if r := meta.FindStatusCondition(other.Status.Conditions, v1alpha1.ConditionReady); r != nil {
		t.Errorf("Bucket outside the watched namespaces has Ready %+v", r)
	}
	// The cache of a namespace-scoped manager holds nothing else: reading
	// another namespace through it is an error, not a silent empty answer.
	if err := mgr.GetCache().Get(ctx, client.ObjectKey{Namespace: scopedOtherNS, Name: "b"}, &v1alpha1.Bucket{}); err == nil {
		t.Errorf("the namespace-scoped manager's cache read a Bucket in %s", scopedOtherNS)
	}
	var list v1alpha1.BucketList
	if err := mgr.GetCache().List(ctx, &list); err != nil {
		t.Fatalf("list Buckets from the namespace-scoped cache: %v", err)
	}
	for _, b := range list.Items {
		if b.Namespace != scopedWatchedNS {
			t.Errorf("the namespace-scoped manager's cache holds Bucket %s/%s", b.Namespace, b.Name)
		}
	}
}
