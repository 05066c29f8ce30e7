package controllers

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/klog/v2"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/builder"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/handler"
	logf "sigs.k8s.io/controller-runtime/pkg/log"
	"sigs.k8s.io/controller-runtime/pkg/predicate"
	"sigs.k8s.io/controller-runtime/pkg/source"

	"github.com/stevedore-dev/stevedore/api/v1alpha1"
)

// +kubebuilder:rbac:groups=monitoring.stevedore.dev,resources=storegateways,verbs=get;list;watch
// +kubebuilder:rbac:groups=monitoring.stevedore.dev,resources=storegateways/status,verbs=get;update;patch
// +kubebuilder:rbac:groups=monitoring.stevedore.dev,resources=storegateways/finalizers,verbs=update
// +kubebuilder:rbac:groups=apps,resources=statefulsets,verbs=get;list;watch;create;patch;delete
// +kubebuilder:rbac:groups="",resources=services,verbs=get;list;watch;create;patch
// +kubebuilder:rbac:groups=policy,resources=poddisruptionbudgets,verbs=get;list;watch;create;patch
// +kubebuilder:rbac:groups="",resources=pods,verbs=get;list;watch

// StoreGatewayReconciler renders a StoreGateway into one StatefulSet per
// shard, a Service and a PodDisruptionBudget, and reports the gateways' sync
// state from their agents.
type StoreGatewayReconciler struct {
	client     client.Client
	reader     client.Reader // uncached: PVCs and StorageClasses of pending pods
	apply      *applier
	status     statusWriter
	poller     *statusPoller
	agentImage string
	interval   time.Duration
}

type storeGatewayScope struct {
	gateway *v1alpha1.StoreGateway
	bucket  *bucketInputs
	objects *storeGatewayObjects
}

// Reconcile brings one StoreGateway's children and status up to date.
func (r *StoreGatewayReconciler) Reconcile(ctx context.Context, req ctrl.Request) (res ctrl.Result, retErr error) {
	g := &v1alpha1.StoreGateway{}
	if err := r.client.Get(ctx, req.NamespacedName, g); err != nil {
		if apierrors.IsNotFound(err) {
			r.status.forget(req.Namespace, req.Name)
			return ctrl.Result{}, nil
		}
		return ctrl.Result{}, err
	}
	if !g.DeletionTimestamp.IsZero() {
		return ctrl.Result{}, nil // children are owned and garbage-collected
	}
	ctx = logf.IntoContext(ctx, logf.FromContext(ctx).WithValues("storegateway", klog.KObj(g)))
	orig := g.DeepCopy()
	defer func() {
		if retErr == nil {
			g.Status.ObservedGeneration = g.Generation
		}
		if err := r.status.patch(ctx, g, orig.Status, g.Status, g.Status.Conditions); err != nil {
			retErr = errors.Join(retErr, err)
		}
	}()
	return r.reconcile(ctx, &storeGatewayScope{gateway: g})
}

func (r *StoreGatewayReconciler) reconcile(ctx context.Context, s *storeGatewayScope) (ctrl.Result, error) {
	g := s.gateway
	bucket, err := loadBucket(ctx, r.client, g.Namespace, g.Spec.BucketRef.Name)
	if err != nil {
		return r.notReady(g, err)
	}
	s.bucket = bucket
	if s.objects, err = renderStoreGateway(g, bucket, r.agentImage); err != nil {
		return r.notReady(g, &configError{ReasonInvalidConfig, err.Error()})
	}
	if err := r.applyChildren(ctx, s); err != nil {
		if isRequeue(err) {
			return ctrl.Result{RequeueAfter: 2 * time.Second}, nil
		}
		r.status.setCondition(g, &g.Status.Conditions, condition(v1alpha1.ConditionReady, metav1.ConditionFalse, ReasonApplyFailed, err.Error()))
		return ctrl.Result{}, err
	}
	pods, err := listPods(ctx, r.client, g.Namespace, componentStore, g.Name)
	if err != nil {
		return ctrl.Result{}, err
	}
	r.updateStatus(g, pods, r.poller.observe(g, pods), diagnosePods(ctx, r.reader, pods, storeGatewayHints))
	return ctrl.Result{RequeueAfter: r.interval}, nil
}

// notReady reports why the gateway cannot be rendered.
func (r *StoreGatewayReconciler) notReady(g *v1alpha1.StoreGateway, err error) (ctrl.Result, error) {
	var ce *configError
	if !errors.As(err, &ce) {
		return ctrl.Result{}, err
	}
	r.status.setCondition(g, &g.Status.Conditions, condition(v1alpha1.ConditionReady, metav1.ConditionFalse, ce.reason, ce.msg))
	if g.Status.Shards == nil {
		r.status.setCondition(g, &g.Status.Conditions, condition(v1alpha1.ConditionSynced, metav1.ConditionUnknown, ce.reason, "no gateway is running: "+ce.msg))
	}
	return ctrl.Result{}, nil
}

func (r *StoreGatewayReconciler) applyChildren(ctx context.Context, s *storeGatewayScope) error {
	g := s.gateway
	var errs []error
	do := func(kind string, obj client.Object) {
		res, err := r.apply.apply(ctx, g, obj)
		reportApply(&r.status, g, kind, obj.GetName(), res, err)
		if err != nil {
			errs = append(errs, err)
		}
	}
	do("Service", s.objects.Service)
	for _, sts := range s.objects.StatefulSets {
		do("StatefulSet", sts)
	}
	do("PodDisruptionBudget", s.objects.PDB)
	if err := r.deleteExtraShards(ctx, g); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// deleteExtraShards removes the StatefulSets of shards beyond spec.shards.
func (r *StoreGatewayReconciler) deleteExtraShards(ctx context.Context, g *v1alpha1.StoreGateway) error {
	var list appsv1.StatefulSetList
	if err := r.client.List(ctx, &list, client.InNamespace(g.Namespace), client.MatchingLabels(selectorLabels(componentStore, g.Name))); err != nil {
		return fmt.Errorf("list StatefulSets: %w", err)
	}
	for i := range list.Items {
		sts := &list.Items[i]
		if !metav1.IsControlledBy(sts, g) || sts.DeletionTimestamp != nil {
			continue
		}
		k, err := strconv.Atoi(sts.Labels[LabelShard])
		if err != nil || k < int(g.ShardCount()) {
			continue
		}
		if err := r.client.Delete(ctx, sts); err != nil && !apierrors.IsNotFound(err) {
			r.status.event(g, true, EventFailed, "Delete", "Failed to delete StatefulSet %s of removed shard %d: %v", sts.Name, k, err)
			return fmt.Errorf("delete StatefulSet %s: %w", sts.Name, err)
		}
		r.apply.forget("StatefulSet", sts.Namespace, sts.Name)
		r.status.event(g, false, EventDeleted, "Delete", "Deleted StatefulSet %s of removed shard %d", sts.Name, k)
		logf.FromContext(ctx).Info("deleted StatefulSet of removed shard", "statefulset", klog.KObj(sts), "shard", k)
	}
	return nil
}

// SetupWithManager wires the watches: StoreGateways, their children, their
// pods (status), the Buckets they use (config rotation) and agent status changes.
func (r *StoreGatewayReconciler) SetupWithManager(mgr ctrl.Manager) error {
	if err := mgr.GetFieldIndexer().IndexField(context.Background(), &v1alpha1.StoreGateway{}, indexBucketRef,
		func(o client.Object) []string { return []string{o.(*v1alpha1.StoreGateway).Spec.BucketRef.Name} }); err != nil {
		return fmt.Errorf("index store gateways by bucket: %w", err)
	}
	return ctrl.NewControllerManagedBy(mgr).
		For(&v1alpha1.StoreGateway{}, builder.WithPredicates(predicate.Or(predicate.GenerationChangedPredicate{}, predicate.AnnotationChangedPredicate{}))).
		Owns(&appsv1.StatefulSet{}).
		Owns(&corev1.Service{}).
		Owns(&policyv1.PodDisruptionBudget{}).
		Watches(&v1alpha1.Bucket{}, handler.EnqueueRequestsFromMapFunc(requestsFromIndex(r.client, &v1alpha1.StoreGatewayList{}, indexBucketRef))).
		Watches(&corev1.Pod{}, handler.EnqueueRequestsFromMapFunc(requestsForPod(componentStore))).
		WatchesRawSource(source.Channel(r.poller.events, &handler.EnqueueRequestForObject{})).
		Complete(r)
}
