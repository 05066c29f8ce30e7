package controllers

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	storagev1 "k8s.io/api/storage/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/envtest"
	"sigs.k8s.io/yaml"
)

// TestPendingExplainedWithOperatorRBAC: the rules generated from the
// +kubebuilder:rbac markers (config/rbac/role.yaml) let the operator read
// what explains a pending pod (its PVC, the StorageClasses, the PVC's Warning
// events); with only a namespaced Role (namespace-scoped mode, no access to
// cluster-scoped StorageClasses) the explanation degrades instead of failing.
// The claim and pod status are written as the PV controller and scheduler
// would (envtest runs neither).
func TestPendingExplainedWithOperatorRBAC(t *testing.T) {
	requireEnv(t)
	ctx := context.Background()
	raw, err := os.ReadFile(filepath.Join("..", "config", "rbac", "role.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	var role rbacv1.ClusterRole
	if err := yaml.Unmarshal(raw, &role); err != nil {
		t.Fatalf("parse config/rbac/role.yaml: %v", err)
	}
	suffix := rand.IntN(1e6)
	slow := fmt.Sprintf("slow-rbac-%d", suffix)
	sc := &storagev1.StorageClass{ObjectMeta: metav1.ObjectMeta{Name: slow}, Provisioner: "example.com/never"}
	if err := k8s.Create(ctx, sc); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = k8s.Delete(ctx, sc) })

	ns := newNamespace(t)
	for _, c := range []struct {
		name  string
		class *string
	}{{"data-noclass-0", nil}, {"data-slow-0", ptr.To(slow)}} {
		pvc := &corev1.PersistentVolumeClaim{
			ObjectMeta: metav1.ObjectMeta{Name: c.name, Namespace: ns},
			Spec: corev1.PersistentVolumeClaimSpec{
				AccessModes: []corev1.PersistentVolumeAccessMode{corev1.ReadWriteOnce}, StorageClassName: c.class,
				Resources: corev1.VolumeResourceRequirements{Requests: corev1.ResourceList{corev1.ResourceStorage: resource.MustParse("1Gi")}},
			},
		}
		if err := k8s.Create(ctx, pvc); err != nil {
			t.Fatal(err)
		}
		pvc.Status.Phase = corev1.ClaimPending
		if err := k8s.Status().Update(ctx, pvc); err != nil {
			t.Fatal(err)
		}
		if c.class != nil {
			now := metav1.Now()
			if err := k8s.Create(ctx, &corev1.Event{
				ObjectMeta:     metav1.ObjectMeta{GenerateName: pvc.Name + ".", Namespace: ns},
				InvolvedObject: corev1.ObjectReference{Kind: "PersistentVolumeClaim", APIVersion: "v1", Namespace: ns, Name: pvc.Name, UID: pvc.UID},
				Type:           corev1.EventTypeWarning, Reason: "ProvisioningFailed", Message: "failed to provision volume: disk quota exceeded",
				FirstTimestamp: now, LastTimestamp: now, Count: 1,
			}); err != nil {
				t.Fatal(err)
			}
		}
	}
	pod := func(claim string) corev1.Pod {
		return corev1.Pod{
			ObjectMeta: metav1.ObjectMeta{Name: strings.TrimPrefix(claim, "data-"), Namespace: ns},
			Spec: corev1.PodSpec{Volumes: []corev1.Volume{{Name: "data", VolumeSource: corev1.VolumeSource{
				PersistentVolumeClaim: &corev1.PersistentVolumeClaimVolumeSource{ClaimName: claim},
			}}}},
			Status: corev1.PodStatus{Phase: corev1.PodPending},
		}
	}
	pods := []corev1.Pod{pod("data-noclass-0"), pod("data-slow-0")}

	// Bind the rules to a user of their own, cluster-wide (ClusterRole) or
	// in the namespace only (Role, as the namespace-scoped install does).
	asUser := func(t *testing.T, name string, clusterWide bool) client.Reader {
		t.Helper()
		u, err := testEnv.AddUser(envtest.User{Name: name}, nil)
		if err != nil {
			t.Fatal(err)
		}
		subject := []rbacv1.Subject{{Kind: rbacv1.UserKind, APIGroup: rbacv1.GroupName, Name: name}}
		var objs []client.Object
		if clusterWide {
			objs = []client.Object{
				&rbacv1.ClusterRole{ObjectMeta: metav1.ObjectMeta{Name: name}, Rules: role.Rules},
				&rbacv1.ClusterRoleBinding{ObjectMeta: metav1.ObjectMeta{Name: name}, Subjects: subject,
					RoleRef: rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: name}},
			}
		} else {
			objs = []client.Object{
				&rbacv1.Role{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns}, Rules: role.Rules},
				&rbacv1.RoleBinding{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns}, Subjects: subject,
					RoleRef: rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "Role", Name: name}},
			}
		}
		for _, o := range objs {
			if err := k8s.Create(ctx, o); err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { _ = k8s.Delete(ctx, o) })
		}
		c, err := client.New(u.Config(), client.Options{Scheme: testScheme})
		if err != nil {
			t.Fatal(err)
		}
		return c
	}

	for _, tc := range []struct {
		name        string
		clusterWide bool
		want        map[string][]string // pod -> message substrings
	}{
		{"ClusterRole", true, map[string][]string{
			"noclass-0": {"PVC data-noclass-0 is Pending: no StorageClass is set and the cluster has no default StorageClass"},
			"slow-0":    {"waiting for a volume from provisioner example.com/never", "disk quota exceeded"},
		}},
		{"namespaced Role", false, map[string][]string{
			"noclass-0": {"PVC data-noclass-0 is Pending: no StorageClass is set; set spec.prometheus.storage.volumeClaimTemplate.storageClassName or make sure the cluster has a default StorageClass"},
			"slow-0":    {"PVC data-slow-0 is Pending: waiting for a volume of StorageClass " + fmt.Sprintf("%q", slow), "disk quota exceeded"},
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := asUser(t, fmt.Sprintf("stevedore-pending-%s-%d", strings.ReplaceAll(strings.ToLower(tc.name), " ", "-"), suffix), tc.clusterWide)
			// Authorization follows new bindings within moments.
			eventually(t, 20*time.Second, "explanations as the operator's user", func() error {
				got := diagnosePods(ctx, r, pods, shipperHints)
				for podName, wants := range tc.want {
					p := got[podName]
					if p == nil || p.Reason != ReasonVolumePending {
						return fmt.Errorf("pod %s: %+v, want %s", podName, p, ReasonVolumePending)
					}
					for _, w := range wants {
						if !strings.Contains(p.Message, w) {
							return fmt.Errorf("pod %s: message %q does not contain %q", podName, p.Message, w)
						}
					}
				}
				return nil
			})
		})
	}
}
