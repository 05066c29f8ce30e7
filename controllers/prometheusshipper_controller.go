package controllers

import (
	"context"
	"errors"
	"fmt"
	"time"

	appsv1 "k8s.io/api/apps/v1"
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
	"sigs.k8s.io/controller-runtime/pkg/source"

	"github.com/stevedore-dev/stevedore/api/v1alpha1"
)

// +kubebuilder:rbac:groups=monitoring.stevedore.dev,resources=prometheusshippers,verbs=get;list;watch
// +kubebuilder:rbac:groups=monitoring.stevedore.dev,resources=prometheusshippers/status,verbs=get;update;patch
// +kubebuilder:rbac:groups=monitoring.stevedore.dev,resources=prometheusshippers/finalizers,verbs=update
// +kubebuilder:rbac:groups="",resources=configmaps,verbs=get;list;watch;create;patch

// indexScrapeConfigMap indexes PrometheusShippers by the ConfigMap holding their scrape config.
const indexScrapeConfigMap = "spec.prometheus.scrapeConfig.configMapRef.name"

// PrometheusShipperReconciler renders a PrometheusShipper into a Prometheus
// StatefulSet with the agent sidecar, and reports shipping state from the agents.
type PrometheusShipperReconciler struct {
	client     client.Client
	reader     client.Reader // uncached: PVCs and StorageClasses of pending pods
	apply      *applier
	status     statusWriter
	poller     *statusPoller
	agentImage string
	interval   time.Duration
}

type shipperScope struct {
	shipper *v1alpha1.PrometheusShipper
	bucket  *bucketInputs
	objects *shipperObjects
}

// Reconcile brings one PrometheusShipper's children and status up to date.
func (r *PrometheusShipperReconciler) Reconcile(ctx context.Context, req ctrl.Request) (res ctrl.Result, retErr error) {
	p := &v1alpha1.PrometheusShipper{}
	if err := r.client.Get(ctx, req.NamespacedName, p); err != nil {
		if apierrors.IsNotFound(err) {
			r.status.forget(req.Namespace, req.Name)
			return ctrl.Result{}, nil
		}
		return ctrl.Result{}, err
	}
	if !p.DeletionTimestamp.IsZero() {
		return ctrl.Result{}, nil
	}
	ctx = logf.IntoContext(ctx, logf.FromContext(ctx).WithValues("prometheusshipper", klog.KObj(p)))
	orig := p.DeepCopy()
	defer func() {
		if retErr == nil {
			p.Status.ObservedGeneration = p.Generation
		}
		if err := r.status.patch(ctx, p, orig.Status, p.Status, p.Status.Conditions); err != nil {
			retErr = errors.Join(retErr, err)
		}
	}()
	return r.reconcile(ctx, &shipperScope{shipper: p})
}

func (r *PrometheusShipperReconciler) reconcile(ctx context.Context, s *shipperScope) (ctrl.Result, error) {
	p := s.shipper
	bucket, err := loadBucket(ctx, r.client, p.Namespace, p.Spec.BucketRef.Name)
	if err != nil {
		return r.notReady(p, err)
	}
	s.bucket = bucket
	userConfig, err := r.scrapeConfig(ctx, p)
	if err != nil {
		return r.notReady(p, err)
	}
	promConfig, err := renderPrometheusConfig(p, userConfig)
	if err != nil {
		return r.notReady(p, err)
	}
	s.objects = renderPrometheusShipper(p, bucket, promConfig, r.agentImage)
	if err := r.applyChildren(ctx, s); err != nil {
		if isRequeue(err) {
			return ctrl.Result{RequeueAfter: 2 * time.Second}, nil
		}
		r.status.setCondition(p, &p.Status.Conditions, condition(v1alpha1.ConditionReady, metav1.ConditionFalse, ReasonApplyFailed, err.Error()))
		return ctrl.Result{}, err
	}
	pods, err := listPods(ctx, r.client, p.Namespace, componentShipper, p.Name)
	if err != nil {
		return ctrl.Result{}, err
	}
	r.updateStatus(p, pods, r.poller.observe(p, pods), diagnosePods(ctx, r.reader, pods, shipperHints))
	return ctrl.Result{RequeueAfter: r.interval}, nil
}

// scrapeConfig returns the user's Prometheus configuration, inline or from its ConfigMap.
func (r *PrometheusShipperReconciler) scrapeConfig(ctx context.Context, p *v1alpha1.PrometheusShipper) (string, error) {
	sc := p.Spec.Prometheus.ScrapeConfig
	if sc == nil {
		return "", nil
	}
	if sc.ConfigMapRef == nil {
		return sc.Inline, nil
	}
	var cm corev1.ConfigMap
	if err := r.client.Get(ctx, client.ObjectKey{Namespace: p.Namespace, Name: sc.ConfigMapRef.Name}, &cm); err != nil {
		if apierrors.IsNotFound(err) {
			return "", &configError{ReasonConfigMapNotFound, fmt.Sprintf("ConfigMap %s/%s not found", p.Namespace, sc.ConfigMapRef.Name)}
		}
		return "", fmt.Errorf("get ConfigMap %s: %w", sc.ConfigMapRef.Name, err)
	}
	v, ok := cm.Data[sc.ConfigMapRef.Key]
	if !ok {
		return "", &configError{ReasonConfigMapNotFound, fmt.Sprintf("ConfigMap %s/%s has no key %q", p.Namespace, cm.Name, sc.ConfigMapRef.Key)}
	}
	return v, nil
}

func (r *PrometheusShipperReconciler) notReady(p *v1alpha1.PrometheusShipper, err error) (ctrl.Result, error) {
	var ce *configError
	if !errors.As(err, &ce) {
		return ctrl.Result{}, err
	}
	r.status.setCondition(p, &p.Status.Conditions, condition(v1alpha1.ConditionReady, metav1.ConditionFalse, ce.reason, ce.msg))
	return ctrl.Result{}, nil
}

func (r *PrometheusShipperReconciler) applyChildren(ctx context.Context, s *shipperScope) error {
	p := s.shipper
	var errs []error
	for _, c := range []struct {
		kind string
		obj  client.Object
	}{
		{"ConfigMap", s.objects.Config},
		{"Service", s.objects.Service},
		{"StatefulSet", s.objects.StatefulSet},
	} {
		res, err := r.apply.apply(ctx, p, c.obj)
		reportApply(&r.status, p, c.kind, c.obj.GetName(), res, err)
		if err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// SetupWithManager wires the watches: PrometheusShippers, their children and
// pods, the Buckets and scrape-config ConfigMaps they read, agent status changes.
func (r *PrometheusShipperReconciler) SetupWithManager(mgr ctrl.Manager) error {
	idx := mgr.GetFieldIndexer()
	if err := idx.IndexField(context.Background(), &v1alpha1.PrometheusShipper{}, indexBucketRef,
		func(o client.Object) []string { return []string{o.(*v1alpha1.PrometheusShipper).Spec.BucketRef.Name} }); err != nil {
		return fmt.Errorf("index shippers by bucket: %w", err)
	}
	if err := idx.IndexField(context.Background(), &v1alpha1.PrometheusShipper{}, indexScrapeConfigMap, func(o client.Object) []string {
		sc := o.(*v1alpha1.PrometheusShipper).Spec.Prometheus.ScrapeConfig
		if sc == nil || sc.ConfigMapRef == nil {
			return nil
		}
		return []string{sc.ConfigMapRef.Name}
	}); err != nil {
		return fmt.Errorf("index shippers by configmap: %w", err)
	}
	return ctrl.NewControllerManagedBy(mgr).
		For(&v1alpha1.PrometheusShipper{}, builder.WithPredicates(predicate.Or(predicate.GenerationChangedPredicate{}, predicate.AnnotationChangedPredicate{}))).
		Owns(&appsv1.StatefulSet{}).
		Owns(&corev1.Service{}).
		Owns(&corev1.ConfigMap{}).
		Watches(&v1alpha1.Bucket{}, handler.EnqueueRequestsFromMapFunc(requestsFromIndex(r.client, &v1alpha1.PrometheusShipperList{}, indexBucketRef))).
		Watches(&corev1.ConfigMap{}, handler.EnqueueRequestsFromMapFunc(requestsFromIndex(r.client, &v1alpha1.PrometheusShipperList{}, indexScrapeConfigMap))).
		Watches(&corev1.Pod{}, handler.EnqueueRequestsFromMapFunc(requestsForPod(componentShipper))).
		WatchesRawSource(source.Channel(r.poller.events, &handler.EnqueueRequestForObject{})).
		Complete(r)
}
