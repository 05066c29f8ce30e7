package controllers

import (
	"context"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/utils/ptr"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/apiutil"
	"sigs.k8s.io/yaml"

	"github.com/stevedore-dev/stevedore/api/v1alpha1"
)

// TestSamples applies the samples with kubectl, compares every object in the
// namespace with a golden file, checks that a second reconcile writes nothing
// and that every child is owned (controller, blockOwnerDeletion) by its
// resource. The dev samples are applied the way users apply them, the whole
// directory at once into namespace default (`kubectl apply -f
// config/samples/`: the Secret and Bucket the files share are identical); the
// production-shaped ones one file at a time into a namespace each. envtest
// runs no garbage collector, so deletion is proved by the owner references the
// real garbage collector follows, not by watching the children disappear.
func TestSamples(t *testing.T) {
	requireEnv(t)
	for _, tc := range []struct {
		name string
		// kubectl apply -f <path>, into namespace default when inDefault
		path      string
		inDefault bool
		// owner kind/name of each child, by "Kind/name"
		children map[string]string
	}{
		{
			name: "dev", path: filepath.Join("..", "config", "samples") + "/", inDefault: true,
			children: map[string]string{
				"Secret/metrics-objstore":                "Bucket/metrics",
				"ConfigMap/prometheus-prometheus-config": "PrometheusShipper/prometheus",
				"Service/prometheus":                     "PrometheusShipper/prometheus",
				"StatefulSet/prometheus":                 "PrometheusShipper/prometheus",
				"Service/store":                          "StoreGateway/store",
				"StatefulSet/store-shard-0":              "StoreGateway/store",
				"PodDisruptionBudget/store":              "StoreGateway/store",
			},
		},
		{
			name: "production-shipper", path: filepath.Join("..", "config", "samples", "production", "shipper.yaml"),
			children: map[string]string{
				"Secret/metrics-objstore":                "Bucket/metrics",
				"ConfigMap/prometheus-prometheus-config": "PrometheusShipper/prometheus",
				"Service/prometheus":                     "PrometheusShipper/prometheus",
				"StatefulSet/prometheus":                 "PrometheusShipper/prometheus",
			},
		},
		{
			name: "production-storegateway", path: filepath.Join("..", "config", "samples", "production", "storegateway.yaml"),
			children: map[string]string{
				"Secret/metrics-objstore":   "Bucket/metrics",
				"Service/store":             "StoreGateway/store",
				"StatefulSet/store-shard-0": "StoreGateway/store",
				"StatefulSet/store-shard-1": "StoreGateway/store",
				"PodDisruptionBudget/store": "StoreGateway/store",
			},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ns := "default"
			if tc.inDefault {
				mustKubectl(t, nil, "apply", "-f", tc.path)
			} else {
				ns = newNamespace(t)
				mustKubectl(t, nil, "apply", "-n", ns, "-f", tc.path)
			}

			// Wait for every expected child, then for the writes to stop.
			eventually(t, 30*time.Second, "children created", func() error {
				objs, err := namespaceObjects(ns)
				if err != nil {
					return err
				}
				for want := range tc.children {
					if _, ok := objs[want]; !ok {
						return errorf("%s not created yet", want)
					}
				}
				return nil
			})
			waitQuiet(t, ns, 2*time.Second, 60*time.Second)

			objs, err := namespaceObjects(ns)
			if err != nil {
				t.Fatal(err)
			}
			checkGolden(t, tc.name, objs)

			// Owner references the garbage collector follows when the resource is deleted.
			for key, u := range objs {
				owner, isChild := tc.children[key]
				refs := u.GetOwnerReferences()
				if !isChild {
					if len(refs) > 0 {
						t.Errorf("%s is owned by %v but is not an expected child", key, refs)
					}
					continue
				}
				if len(refs) != 1 {
					t.Errorf("%s: want one owner reference, got %v", key, refs)
					continue
				}
				r := refs[0]
				if r.Kind+"/"+r.Name != owner || r.APIVersion != v1alpha1.GroupVersion.String() ||
					r.Controller == nil || !*r.Controller || r.BlockOwnerDeletion == nil || !*r.BlockOwnerDeletion {
					t.Errorf("%s: owner reference %+v, want controller and blockOwnerDeletion to %s", key, r, owner)
				}
			}

			// Creating the children was announced with events on the resource.
			for _, owner := range tc.children {
				_, name, _ := strings.Cut(owner, "/")
				waitEvent(t, ns, name, EventCreated)
			}

			// A second reconcile of every resource with nothing changed writes nothing.
			before := writes.writesIn(ns)
			for _, req := range sampleResources(objs, ns) {
				var err error
				switch req.kind {
				case "Bucket":
					_, err = recs.bucket.Reconcile(context.Background(), req.Request)
				case "PrometheusShipper":
					_, err = recs.shipper.Reconcile(context.Background(), req.Request)
				case "StoreGateway":
					_, err = recs.storeGateway.Reconcile(context.Background(), req.Request)
				}
				if err != nil {
					t.Fatalf("reconcile %s %s: %v", req.kind, req.Name, err)
				}
			}
			if after := writes.writesIn(ns); len(after) != len(before) {
				t.Errorf("second reconcile wrote:\n%s", strings.Join(after[len(before):], "\n"))
			}
		})
	}

	// The dev MinIO of config/samples/minio.yaml (applied above) runs in a
	// namespace that enforces the restricted Pod Security Standard: the API
	// server's PodSecurity admission must admit a pod of its template, and
	// refuse one that allows privilege escalation (so the check can fail).
	t.Run("minio-pod-security-restricted", func(t *testing.T) {
		var nsObj corev1.Namespace
		if err := k8s.Get(context.Background(), client.ObjectKey{Name: "minio"}, &nsObj); err != nil {
			t.Fatalf("namespace minio from minio.yaml: %v", err)
		}
		if got := nsObj.Labels["pod-security.kubernetes.io/enforce"]; got != "restricted" {
			t.Fatalf("namespace minio: pod-security.kubernetes.io/enforce=%q, want restricted", got)
		}
		var d appsv1.Deployment
		if err := k8s.Get(context.Background(), client.ObjectKey{Namespace: "minio", Name: "minio"}, &d); err != nil {
			t.Fatalf("deployment minio: %v", err)
		}
		var pvc corev1.PersistentVolumeClaim
		if err := k8s.Get(context.Background(), client.ObjectKey{Namespace: "minio", Name: "minio-data"}, &pvc); err != nil {
			t.Fatalf("pvc minio-data: %v", err)
		}
		if pvc.Spec.StorageClassName != nil && *pvc.Spec.StorageClassName != "" {
			t.Errorf("pvc minio-data names StorageClass %q; the samples use the default class", *pvc.Spec.StorageClassName)
		}
		podFrom := func(name string, mutate func(*corev1.PodSpec)) *corev1.Pod {
			p := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: "minio", Name: name, Labels: d.Spec.Template.Labels}}
			d.Spec.Template.Spec.DeepCopyInto(&p.Spec)
			if mutate != nil {
				mutate(&p.Spec)
			}
			return p
		}
		if err := k8s.Create(context.Background(), podFrom("minio-template", nil), client.DryRunAll); err != nil {
			t.Errorf("a pod of minio.yaml's template is not admitted in namespace minio: %v", err)
		}
		escalating := podFrom("escalating", func(s *corev1.PodSpec) {
			s.Containers[0].SecurityContext.AllowPrivilegeEscalation = ptr.To(true)
		})
		err := k8s.Create(context.Background(), escalating, client.DryRunAll)
		if err == nil || !strings.Contains(err.Error(), "PodSecurity") {
			t.Errorf("a pod allowing privilege escalation in namespace minio: err = %v, want a PodSecurity rejection", err)
		}
	})
}

type resourceRequest struct {
	kind string
	ctrl.Request
}

func sampleResources(objs map[string]*unstructured.Unstructured, ns string) []resourceRequest {
	var out []resourceRequest
	for _, key := range sortedKeys(objs) {
		kind, name, _ := strings.Cut(key, "/")
		if slices.Contains([]string{"Bucket", "PrometheusShipper", "StoreGateway"}, kind) {
			out = append(out, resourceRequest{kind: kind, Request: ctrl.Request{NamespacedName: client.ObjectKey{Namespace: ns, Name: name}}})
		}
	}
	return out
}

// namespaceObjects lists the objects the samples and the operator create in
// namespace, by "Kind/name".
func namespaceObjects(ns string) (map[string]*unstructured.Unstructured, error) {
	out := map[string]*unstructured.Unstructured{}
	for _, list := range []client.ObjectList{
		&corev1.SecretList{}, &corev1.ConfigMapList{}, &corev1.ServiceList{}, &corev1.PersistentVolumeClaimList{},
		&appsv1.StatefulSetList{}, &policyv1.PodDisruptionBudgetList{},
		&v1alpha1.BucketList{}, &v1alpha1.PrometheusShipperList{}, &v1alpha1.StoreGatewayList{},
	} {
		if err := k8s.List(context.Background(), list, client.InNamespace(ns)); err != nil {
			return nil, err
		}
		items, err := runtimeItems(list)
		if err != nil {
			return nil, err
		}
		for _, obj := range items {
			gvk, err := apiutil.GVKForObject(obj, testScheme)
			if err != nil {
				return nil, err
			}
			m, err := runtime.DefaultUnstructuredConverter.ToUnstructured(obj)
			if err != nil {
				return nil, err
			}
			u := &unstructured.Unstructured{Object: m}
			u.SetGroupVersionKind(gvk)
			if gvk.Kind == "ConfigMap" && u.GetName() == "kube-root-ca.crt" ||
				gvk.Kind == "Service" && ns == "default" && u.GetName() == "kubernetes" {
				continue // made by the API server
			}
			out[gvk.Kind+"/"+u.GetName()] = u
		}
	}
	return out, nil
}

func runtimeItems(list client.ObjectList) ([]client.Object, error) {
	var out []client.Object
	switch l := list.(type) {
	case *corev1.SecretList:
		for i := range l.Items {
			out = append(out, &l.Items[i])
		}
	case *corev1.ConfigMapList:
		for i := range l.Items {
			out = append(out, &l.Items[i])
		}
	case *corev1.ServiceList:
		for i := range l.Items {
			out = append(out, &l.Items[i])
		}
	case *corev1.PersistentVolumeClaimList:
		for i := range l.Items {
			out = append(out, &l.Items[i])
		}
	case *appsv1.StatefulSetList:
		for i := range l.Items {
			out = append(out, &l.Items[i])
		}
	case *policyv1.PodDisruptionBudgetList:
		for i := range l.Items {
			out = append(out, &l.Items[i])
		}
	case *v1alpha1.BucketList:
		for i := range l.Items {
			out = append(out, &l.Items[i])
		}
	case *v1alpha1.PrometheusShipperList:
		for i := range l.Items {
			out = append(out, &l.Items[i])
		}
	case *v1alpha1.StoreGatewayList:
		for i := range l.Items {
			out = append(out, &l.Items[i])
		}
	default:
		return nil, errorf("unexpected list %T", list)
	}
	return out, nil
}

// checkGolden compares the objects, stripped of what the server makes up
// (uids, versions, times, status), with testdata/<name>.golden.yaml.
func checkGolden(t *testing.T, name string, objs map[string]*unstructured.Unstructured) {
	t.Helper()
	var docs []string
	for _, key := range sortedKeys(objs) {
		m := sanitize(objs[key].DeepCopy())
		b, err := yaml.Marshal(m.Object)
		if err != nil {
			t.Fatal(err)
		}
		docs = append(docs, "# "+key+"\n"+string(b))
	}
	got := strings.Join(docs, "---\n")
	path := filepath.Join("testdata", name+".golden.yaml")
	if *update {
		if err := os.MkdirAll("testdata", 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("read golden file (run with -update to create it): %v", err)
	}
	if diff := cmp.Diff(string(want), got); diff != "" {
		t.Errorf("objects differ from %s (-want +got; run with -update if the change is intended):\n%s", path, diff)
	}
}

func sanitize(u *unstructured.Unstructured) *unstructured.Unstructured {
	for _, f := range []string{"uid", "resourceVersion", "creationTimestamp", "managedFields", "generation", "namespace"} {
		unstructured.RemoveNestedField(u.Object, "metadata", f)
	}
	ann := u.GetAnnotations()
	delete(ann, "kubectl.kubernetes.io/last-applied-configuration")
	if len(ann) == 0 {
		unstructured.RemoveNestedField(u.Object, "metadata", "annotations")
	} else {
		u.SetAnnotations(ann)
	}
	refs := u.GetOwnerReferences()
	for i := range refs {
		refs[i].UID = ""
	}
	if len(refs) > 0 {
		u.SetOwnerReferences(refs)
	}
	delete(u.Object, "status")
	if u.GetKind() == "Service" {
		// Allocated by the server; "None" for headless Services is kept.
		for _, f := range []string{"clusterIP", "clusterIPs"} {
			if v, _, _ := unstructured.NestedString(u.Object, "spec", f); v != "None" {
				unstructured.RemoveNestedField(u.Object, "spec", f)
			}
		}
	}
	if u.GetKind() == "Secret" {
		// Readable YAML instead of base64.
		data, _, _ := unstructured.NestedMap(u.Object, "data")
		plain := map[string]any{}
		for k, v := range data {
			s, _ := v.(string)
			b, err := decodeBase64(s)
			if err != nil {
				plain[k] = s
				continue
			}
			plain[k] = string(b)
		}
		delete(u.Object, "data")
		if len(plain) > 0 {
			u.Object["stringData"] = plain
		}
	}
	return u
}
