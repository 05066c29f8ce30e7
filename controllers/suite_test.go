package controllers

import (
	"bytes"
	"context"
	"flag"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/go-logr/logr"
	"github.com/prometheus/client_golang/prometheus"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	utilruntime "k8s.io/apimachinery/pkg/util/runtime"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/rest"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/envtest"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"

	"github.com/stevedore-dev/stevedore/api/v1alpha1"
)

// One real kube-apiserver + etcd (envtest) per package, with the manager
// running every reconciler, as the operator does in a cluster. envtest runs
// no controllers of its own: no pods are created for StatefulSets and no
// garbage collector deletes owned objects.

const testAgentImage = "stevedore-agent:test"

var (
	update = flag.Bool("update", false, "rewrite the golden files under testdata/")

	testEnv    *envtest.Environment
	k8s        client.Client // uncached client for assertions
	recs       *reconcilers  // the manager's reconcilers
	writes     = &writeCounter{byNamespace: map[string][]string{}}
	kubeconfig string
	testScheme = runtime.NewScheme()
	testReg    = prometheus.NewRegistry()
	envErr     error

	// podURLs maps "namespace/pod" to an agent's base URL, so that agent
	// processes on localhost stand in for pods.
	podURLs sync.Map
)

func TestMain(m *testing.M) {
	flag.Parse()
	utilruntime.Must(clientgoscheme.AddToScheme(testScheme))
	utilruntime.Must(v1alpha1.AddToScheme(testScheme))
	if testing.Short() {
		envErr = fmt.Errorf("-short: envtest not started")
		os.Exit(m.Run())
	}
	if os.Getenv("KUBEBUILDER_ASSETS") == "" {
		fmt.Fprintln(os.Stderr, `KUBEBUILDER_ASSETS is not set: eval "$(hack/testbin.sh kube etcd)" first (or run with -short for the tests that need no server)`)
		os.Exit(1)
	}
	stop, err := startEnv()
	if err != nil {
		fmt.Fprintln(os.Stderr, "start envtest:", err)
		if stop != nil {
			stop()
		}
		os.Exit(1)
	}
	code := m.Run()
	stop()
	os.Exit(code)
}

func startEnv() (func(), error) {
	if os.Getenv("STEVEDORE_TEST_LOG") != "" {
		ctrl.SetLogger(zap.New(zap.UseDevMode(true), zap.WriteTo(os.Stderr)))
	} else {
		ctrl.SetLogger(logr.Discard())
	}
	testEnv = &envtest.Environment{
		CRDDirectoryPaths:     []string{filepath.Join("..", "config", "crd", "bases")},
		ErrorIfCRDPathMissing: true,
	}
	cfg, err := testEnv.Start()
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	stop := func() {
		cancel()
		wg.Wait()
		_ = testEnv.Stop()
	}
	if k8s, err = client.New(cfg, client.Options{Scheme: testScheme}); err != nil {
		return stop, err
	}
	user, err := testEnv.AddUser(envtest.User{Name: "test-admin", Groups: []string{"system:masters"}}, nil)
	if err != nil {
		return stop, err
	}
	kc, err := user.KubeConfig()
	if err != nil {
		return stop, err
	}
	f, err := os.CreateTemp("", "stevedore-kubeconfig-*")
	if err != nil {
		return stop, err
	}
	_, _ = f.Write(kc)
	_ = f.Close()
	kubeconfig = f.Name()
	prevStop := stop
	stop = func() { prevStop(); _ = os.Remove(kubeconfig) }

	mgr, err := ctrl.NewManager(cfg, ctrl.Options{
		Scheme:                 testScheme,
		Metrics:                metricsserver.Options{BindAddress: "0"},
		HealthProbeBindAddress: "0",
		Cache:                  suiteCacheOptions(), // all namespaces but TestWatchNamespaces' own
		NewClient: func(config *rest.Config, options client.Options) (client.Client, error) {
			c, err := client.New(config, options)
			if err != nil {
				return nil, err
			}
			writes.Client = c
			return writes, nil
		},
	})
	if err != nil {
		return stop, err
	}
	recs, err = setup(mgr, Options{
		AgentImage:         testAgentImage,
		StatusPollInterval: 500 * time.Millisecond,
		StatusTimeout:      time.Second,
		Registerer:         testReg,
		PodAddress: func(pod *corev1.Pod) string {
			if u, ok := podURLs.Load(pod.Namespace + "/" + pod.Name); ok {
				return u.(string)
			}
			return PodIPAddress(pod)
		},
	})
	if err != nil {
		return stop, err
	}
	wg.Go(func() {
		if err := mgr.Start(ctx); err != nil {
			fmt.Fprintln(os.Stderr, "manager:", err)
		}
	})
	if !mgr.GetCache().WaitForCacheSync(ctx) {
		return stop, fmt.Errorf("cache did not sync")
	}
	return stop, nil
}

// requireEnv skips tests that need the control plane under -short.
func requireEnv(t *testing.T) {
	t.Helper()
	if envErr != nil {
		t.Skip(envErr)
	}
}

// newNamespace creates a namespace for one test.
func newNamespace(t *testing.T) string {
	t.Helper()
	name := fmt.Sprintf("t-%s-%d", strings.ToLower(strings.NewReplacer("/", "-", "_", "-").Replace(t.Name())), rand.IntN(1e6))
	if len(name) > 63 {
		name = name[len(name)-63:]
		name = strings.TrimLeft(name, "-")
	}
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name}}
	if err := k8s.Create(context.Background(), ns); err != nil {
		t.Fatalf("create namespace: %v", err)
	}
	return name
}

// kubectl runs the real kubectl against the test control plane.
func kubectl(t *testing.T, stdin []byte, args ...string) (string, error) {
	t.Helper()
	cmd := exec.Command(filepath.Join(os.Getenv("KUBEBUILDER_ASSETS"), "kubectl"), append([]string{"--kubeconfig", kubeconfig}, args...)...)
	if stdin != nil {
		cmd.Stdin = bytes.NewReader(stdin)
	}
	var out bytes.Buffer
	cmd.Stdout = &out
	cmd.Stderr = &out
	err := cmd.Run()
	return out.String(), err
}

func mustKubectl(t *testing.T, stdin []byte, args ...string) string {
	t.Helper()
	out, err := kubectl(t, stdin, args...)
	if err != nil {
		t.Fatalf("kubectl %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return out
}

// eventually polls cond until it returns nil or timeout passes.
func eventually(t *testing.T, timeout time.Duration, what string, cond func() error) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	var err error
	for {
		if err = cond(); err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: still failing after %s: %v", what, timeout, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// writeCounter wraps the manager's real client and records every write by
// namespace, so tests can prove that a reconcile with nothing to do writes nothing.
type writeCounter struct {
	client.Client
	mu          sync.Mutex
	byNamespace map[string][]string
}

type namedObject interface {
	GetNamespace() string
	GetName() string
}

func (w *writeCounter) record(verb string, obj any) {
	o, ok := obj.(namedObject)
	if !ok {
		return
	}
	kind := fmt.Sprintf("%T", obj)
	if ro, ok := obj.(runtime.Object); ok && ro.GetObjectKind().GroupVersionKind().Kind != "" {
		kind = ro.GetObjectKind().GroupVersionKind().Kind
	}
	w.mu.Lock()
	w.byNamespace[o.GetNamespace()] = append(w.byNamespace[o.GetNamespace()], fmt.Sprintf("%s %s %s", verb, kind, o.GetName()))
	w.mu.Unlock()
}

// writesIn returns the writes recorded in namespace so far.
func (w *writeCounter) writesIn(namespace string) []string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return append([]string(nil), w.byNamespace[namespace]...)
}

func (w *writeCounter) Create(ctx context.Context, obj client.Object, opts ...client.CreateOption) error {
	w.record("create", obj)
	return w.Client.Create(ctx, obj, opts...)
}

func (w *writeCounter) Update(ctx context.Context, obj client.Object, opts ...client.UpdateOption) error {
	w.record("update", obj)
	return w.Client.Update(ctx, obj, opts...)
}

func (w *writeCounter) Patch(ctx context.Context, obj client.Object, patch client.Patch, opts ...client.PatchOption) error {
	w.record("patch", obj)
	return w.Client.Patch(ctx, obj, patch, opts...)
}

func (w *writeCounter) Apply(ctx context.Context, obj runtime.ApplyConfiguration, opts ...client.ApplyOption) error {
	w.record("apply", obj)
	return w.Client.Apply(ctx, obj, opts...)
}

func (w *writeCounter) Delete(ctx context.Context, obj client.Object, opts ...client.DeleteOption) error {
	w.record("delete", obj)
	return w.Client.Delete(ctx, obj, opts...)
}

func (w *writeCounter) DeleteAllOf(ctx context.Context, obj client.Object, opts ...client.DeleteAllOfOption) error {
	w.record("deleteall", obj)
	return w.Client.DeleteAllOf(ctx, obj, opts...)
}

func (w *writeCounter) Status() client.SubResourceWriter { return w.SubResource("status") }

func (w *writeCounter) SubResource(name string) client.SubResourceClient {
	return &subResourceCounter{SubResourceClient: w.Client.SubResource(name), w: w, name: name}
}

type subResourceCounter struct {
	client.SubResourceClient
	w    *writeCounter
	name string
}

func (s *subResourceCounter) Create(ctx context.Context, obj, sub client.Object, opts ...client.SubResourceCreateOption) error {
	s.w.record("create/"+s.name, obj)
	return s.SubResourceClient.Create(ctx, obj, sub, opts...)
}

func (s *subResourceCounter) Update(ctx context.Context, obj client.Object, opts ...client.SubResourceUpdateOption) error {
	s.w.record("update/"+s.name, obj)
	return s.SubResourceClient.Update(ctx, obj, opts...)
}

func (s *subResourceCounter) Patch(ctx context.Context, obj client.Object, patch client.Patch, opts ...client.SubResourcePatchOption) error {
	s.w.record("patch/"+s.name, obj)
	return s.SubResourceClient.Patch(ctx, obj, patch, opts...)
}

func (s *subResourceCounter) Apply(ctx context.Context, obj runtime.ApplyConfiguration, opts ...client.SubResourceApplyOption) error {
	s.w.record("apply/"+s.name, obj)
	return s.SubResourceClient.Apply(ctx, obj, opts...)
}

// waitQuiet waits until no write happened in namespace for quiet, and returns the writes so far.
func waitQuiet(t *testing.T, namespace string, quiet, timeout time.Duration) []string {
	t.Helper()
	deadline := time.Now().Add(timeout)
	last := writes.writesIn(namespace)
	since := time.Now()
	for time.Now().Before(deadline) {
		time.Sleep(100 * time.Millisecond)
		cur := writes.writesIn(namespace)
		if len(cur) != len(last) {
			last, since = cur, time.Now()
			continue
		}
		if time.Since(since) >= quiet {
			return cur
		}
	}
	t.Fatalf("namespace %s: writes did not stop within %s; last ones: %s", namespace, timeout, strings.Join(tail(last, 10), "\n"))
	return nil
}

func tail(s []string, n int) []string {
	if len(s) <= n {
		return s
	}
	return s[len(s)-n:]
}

func sortedKeys[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}
