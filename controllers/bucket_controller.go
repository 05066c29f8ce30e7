package controllers

import (
	"context"
	"errors"
	"fmt"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/klog/v2"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/builder"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/handler"
	logf "sigs.k8s.io/controller-runtime/pkg/log"
	"sigs.k8s.io/controller-runtime/pkg/predicate"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"
	"sigs.k8s.io/controller-runtime/pkg/source"

	"github.com/stevedore-dev/stevedore/api/v1alpha1"
)

// +kubebuilder:rbac:groups=monitoring.stevedore.dev,resources=buckets,verbs=get;list;watch
// +kubebuilder:rbac:groups=monitoring.stevedore.dev,resources=buckets/status,verbs=get;update;patch
// +kubebuilder:rbac:groups=monitoring.stevedore.dev,resources=buckets/finalizers,verbs=update
// +kubebuilder:rbac:groups="",resources=secrets,verbs=get;list;watch;create;patch
// +kubebuilder:rbac:groups=events.k8s.io,resources=events,verbs=create;patch

// indexBucketSecrets indexes Buckets by the Secrets they read.
const indexBucketSecrets = "spec.secretNames"

// BucketReconciler renders a Bucket into an objstore configuration Secret
// that workloads mount, and probes that the bucket is reachable.
type BucketReconciler struct {
	client  client.Client
	apply   *applier
	status  statusWriter
	prober  *bucketProber
	metrics *metrics
}

// bucketScope is what one reconcile of a Bucket works on.
type bucketScope struct {
	bucket   *v1alpha1.Bucket
	rendered *objstoreConfig
}

// Reconcile brings one Bucket's config Secret and status up to date.
func (r *BucketReconciler) Reconcile(ctx context.Context, req ctrl.Request) (res ctrl.Result, retErr error) {
	b := &v1alpha1.Bucket{}
	if err := r.client.Get(ctx, req.NamespacedName, b); err != nil {
		if apierrors.IsNotFound(err) {
			r.status.forget(req.Namespace, req.Name)
			return ctrl.Result{}, nil
		}
		return ctrl.Result{}, err
	}
	if !b.DeletionTimestamp.IsZero() {
		// The config Secret is owned by the Bucket and goes with it.
		r.prober.forget(b.UID)
		return ctrl.Result{}, nil
	}
	ctx = logf.IntoContext(ctx, logf.FromContext(ctx).WithValues("bucket", klog.KObj(b)))
	orig := b.DeepCopy()
	scope := &bucketScope{bucket: b}
	defer func() {
		if retErr == nil {
			b.Status.ObservedGeneration = b.Generation
		}
		if err := r.status.patch(ctx, b, orig.Status, b.Status, b.Status.Conditions); err != nil {
			retErr = errors.Join(retErr, err)
		}
	}()
	return r.reconcile(ctx, scope)
}

func (r *BucketReconciler) reconcile(ctx context.Context, s *bucketScope) (ctrl.Result, error) {
	b := s.bucket
	rendered, err := renderObjstore(ctx, r.client, b)
	if err != nil {
		var ce *configError
		if errors.As(err, &ce) {
			// Nothing to retry until the spec or a Secret changes; both are watched.
			r.status.setCondition(b, &b.Status.Conditions, condition(v1alpha1.ConditionReady, metav1.ConditionFalse, ce.reason, ce.msg))
			r.status.setCondition(b, &b.Status.Conditions, condition(v1alpha1.ConditionReachable, metav1.ConditionUnknown, ce.reason, "the objstore config cannot be rendered: "+ce.msg))
			return ctrl.Result{}, nil
		}
		return ctrl.Result{}, err
	}
	s.rendered = rendered
	if err := r.applySecret(ctx, s); err != nil {
		r.status.setCondition(b, &b.Status.Conditions, condition(v1alpha1.ConditionReady, metav1.ConditionFalse, ReasonApplyFailed, err.Error()))
		return ctrl.Result{}, err
	}
	hash := hashBytes(rendered.YAML)
	b.Status.Type = rendered.Type
	b.Status.BucketName = rendered.BucketName
	b.Status.ConfigSecretName = objstoreSecretName(b.Name)
	b.Status.ConfigHash = hash

	if rendered.Type == v1alpha1.BucketFilesystem {
		// The directory lives on each pod's filesystem, not the operator's.
		r.status.setCondition(b, &b.Status.Conditions, condition(v1alpha1.ConditionReachable, metav1.ConditionUnknown, ReasonNotProbed,
			"filesystem buckets are local to each pod; the operator does not probe them"))
		r.status.setCondition(b, &b.Status.Conditions, condition(v1alpha1.ConditionReady, metav1.ConditionTrue, ReasonReady, "objstore config rendered into Secret "+b.Status.ConfigSecretName))
		return ctrl.Result{}, nil
	}

	probe, next := r.prober.result(probeRequest{
		owner:      b,
		configHash: hash,
		config:     rendered.YAML,
		write:      b.Spec.Probe.Write,
		timeout:    durationOr(b.Spec.Probe.Timeout, 15*time.Second),
		interval:   durationOr(b.Spec.Probe.Interval, 5*time.Minute),
	})
	switch {
	case probe == nil:
		r.status.setCondition(b, &b.Status.Conditions, condition(v1alpha1.ConditionReachable, metav1.ConditionUnknown, ReasonProbing, "probing the bucket with the current config"))
		r.status.setCondition(b, &b.Status.Conditions, condition(v1alpha1.ConditionReady, metav1.ConditionUnknown, ReasonProbing, "waiting for the first probe of the current config"))
	case probe.Err != nil:
		msg := fmt.Sprintf("%s bucket %q: %v", rendered.Type, rendered.BucketName, probe.Err)
		r.status.setCondition(b, &b.Status.Conditions, condition(v1alpha1.ConditionReachable, metav1.ConditionFalse, ReasonUnreachable, msg))
		r.status.setCondition(b, &b.Status.Conditions, condition(v1alpha1.ConditionReady, metav1.ConditionFalse, ReasonUnreachable, msg))
		b.Status.LastProbeTime = &metav1.Time{Time: probe.Time.Truncate(time.Second)}
	default:
		what := "listed"
		if b.Spec.Probe.Write {
			what = "listed, wrote, read back and deleted a probe object in"
		}
		msg := fmt.Sprintf("%s %s bucket %q", what, rendered.Type, rendered.BucketName)
		r.status.setCondition(b, &b.Status.Conditions, condition(v1alpha1.ConditionReachable, metav1.ConditionTrue, ReasonReachable, msg))
		r.status.setCondition(b, &b.Status.Conditions, condition(v1alpha1.ConditionReady, metav1.ConditionTrue, ReasonReady, "config rendered into Secret "+b.Status.ConfigSecretName+"; bucket reachable"))
		b.Status.LastProbeTime = &metav1.Time{Time: probe.Time.Truncate(time.Second)}
	}
	return ctrl.Result{RequeueAfter: next}, nil
}

// applySecret writes the rendered config into the Secret workloads mount.
func (r *BucketReconciler) applySecret(ctx context.Context, s *bucketScope) error {
	b := s.bucket
	sec := &corev1.Secret{
		TypeMeta: metav1.TypeMeta{APIVersion: "v1", Kind: "Secret"},
		ObjectMeta: metav1.ObjectMeta{
			Name:        objstoreSecretName(b.Name),
			Namespace:   b.Namespace,
			Labels:      commonLabels(componentBucket, b.Name),
			Annotations: map[string]string{AnnotationConfigHash: hashBytes(s.rendered.YAML)},
		},
		Type: corev1.SecretTypeOpaque,
		Data: map[string][]byte{objstoreKey: s.rendered.YAML},
	}
	res, err := r.apply.apply(ctx, b, sec)
	reportApply(&r.status, b, "Secret", sec.Name, res, err)
	return err
}

// reportApply logs and emits an Event for a child write.
func reportApply(w *statusWriter, owner client.Object, kind, name string, res applyResult, err error) {
	switch {
	case errors.Is(err, errDeleting):
		// Reported once, when the deletion started.
	case errors.Is(err, errRecreating):
		w.event(owner, false, EventRecreating, "Recreate", "Deleted %s %s (keeping its pods) to change immutable fields; it is created again", kind, name)
	case err != nil:
		w.event(owner, true, EventFailed, "Apply", "Failed to apply %s %s: %v", kind, name, truncate(err.Error(), 600))
	case res == applyCreated:
		w.event(owner, false, EventCreated, "Create", "Created %s %s", kind, name)
	case res == applyUpdated:
		w.event(owner, false, EventUpdated, "Update", "Updated %s %s", kind, name)
	}
}

// SetupWithManager wires the watches: Buckets, the Secrets they own and the
// Secrets they read (through an index), and finished probes.
func (r *BucketReconciler) SetupWithManager(mgr ctrl.Manager) error {
	if err := mgr.GetFieldIndexer().IndexField(context.Background(), &v1alpha1.Bucket{}, indexBucketSecrets,
		func(o client.Object) []string { return bucketSecretNames(o.(*v1alpha1.Bucket)) }); err != nil {
		return fmt.Errorf("index buckets by secret: %w", err)
	}
	return ctrl.NewControllerManagedBy(mgr).
		For(&v1alpha1.Bucket{}, builder.WithPredicates(predicate.Or(predicate.GenerationChangedPredicate{}, predicate.AnnotationChangedPredicate{}))).
		Owns(&corev1.Secret{}).
		Watches(&corev1.Secret{}, handler.EnqueueRequestsFromMapFunc(r.bucketsForSecret)).
		WatchesRawSource(source.Channel(r.prober.events, &handler.EnqueueRequestForObject{})).
		Complete(r)
}

func (r *BucketReconciler) bucketsForSecret(ctx context.Context, o client.Object) []reconcile.Request {
	var list v1alpha1.BucketList
	if err := r.client.List(ctx, &list, client.InNamespace(o.GetNamespace()), client.MatchingFields{indexBucketSecrets: o.GetName()}); err != nil {
		logf.FromContext(ctx).Error(err, "list buckets for secret", "secret", klog.KObj(o))
		return nil
	}
	reqs := make([]reconcile.Request, 0, len(list.Items))
	for i := range list.Items {
		reqs = append(reqs, reconcile.Request{NamespacedName: client.ObjectKeyFromObject(&list.Items[i])})
	}
	return reqs
}

func durationOr(d *metav1.Duration, def time.Duration) time.Duration {
	if d == nil || d.Duration <= 0 {
		return def
	}
	return d.Duration
}
