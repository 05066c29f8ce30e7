package controllers

import (
	"fmt"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/tools/events"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"
	ctrlmetrics "sigs.k8s.io/controller-runtime/pkg/metrics"
)

// Options configure every reconciler.
type Options struct {
	// AgentImage is the default image of the Stevedore agent.
	AgentImage string
	// StatusPollInterval bounds how long status may lag behind the agents.
	StatusPollInterval time.Duration
	// StatusTimeout bounds one /api/v1/status request to a pod.
	StatusTimeout time.Duration
	// PodAddress says how to reach a pod's agent; PodIPAddress when nil.
	// Tests map pods to agent processes on localhost.
	PodAddress PodAddressFunc
	// Registerer receives the operator's metrics; controller-runtime's
	// registry (served by the manager) when nil.
	Registerer prometheus.Registerer
}

func (o *Options) defaults() {
	if o.AgentImage == "" {
		o.AgentImage = "stevedore-agent:latest"
	}
	if o.StatusPollInterval <= 0 {
		o.StatusPollInterval = 15 * time.Second
	}
	if o.StatusTimeout <= 0 {
		o.StatusTimeout = 2 * time.Second
	}
	if o.PodAddress == nil {
		o.PodAddress = PodIPAddress
	}
	if o.Registerer == nil {
		o.Registerer = ctrlmetrics.Registry
	}
}

// reconcilers are the three reconcilers, built on one client.
type reconcilers struct {
	bucket       *BucketReconciler
	shipper      *PrometheusShipperReconciler
	storeGateway *StoreGatewayReconciler
}

// reader reads what the manager does not cache (the PVCs and StorageClasses
// of pending pods) straight from the API server.
func newReconcilers(c client.Client, reader client.Reader, scheme *runtime.Scheme, rec func(name string) events.EventRecorder, opts Options, m *metrics) *reconcilers {
	ap := newApplier(c, scheme, m)
	return &reconcilers{
		bucket: &BucketReconciler{
			client:  c,
			apply:   ap,
			status:  statusWriter{client: c, recorder: rec("bucket-controller"), metrics: m, kind: "Bucket"},
			prober:  newBucketProber(m),
			metrics: m,
		},
		shipper: &PrometheusShipperReconciler{
			client:     c,
			reader:     reader,
			apply:      ap,
			status:     statusWriter{client: c, recorder: rec("prometheusshipper-controller"), metrics: m, kind: "PrometheusShipper"},
			poller:     newStatusPoller("sidecar", opts.PodAddress, opts.StatusTimeout, opts.StatusPollInterval, m),
			agentImage: opts.AgentImage,
			interval:   opts.StatusPollInterval,
		},
		storeGateway: &StoreGatewayReconciler{
			client:     c,
			reader:     reader,
			apply:      ap,
			status:     statusWriter{client: c, recorder: rec("storegateway-controller"), metrics: m, kind: "StoreGateway"},
			poller:     newStatusPoller("store", opts.PodAddress, opts.StatusTimeout, opts.StatusPollInterval, m),
			agentImage: opts.AgentImage,
			interval:   opts.StatusPollInterval,
		},
	}
}

// Setup registers the reconcilers of every kind with mgr.
func Setup(mgr ctrl.Manager, opts Options) error {
	_, err := setup(mgr, opts)
	return err
}

func setup(mgr ctrl.Manager, opts Options) (*reconcilers, error) {
	opts.defaults()
	m := newMetrics(opts.Registerer)
	rs := newReconcilers(mgr.GetClient(), mgr.GetAPIReader(), mgr.GetScheme(), func(name string) events.EventRecorder { return mgr.GetEventRecorder(name) }, opts, m)
	if err := rs.bucket.SetupWithManager(mgr); err != nil {
		return nil, fmt.Errorf("set up Bucket controller: %w", err)
	}
	if err := rs.shipper.SetupWithManager(mgr); err != nil {
		return nil, fmt.Errorf("set up PrometheusShipper controller: %w", err)
	}
	if err := rs.storeGateway.SetupWithManager(mgr); err != nil {
		return nil, fmt.Errorf("set up StoreGateway controller: %w", err)
	}
	return rs, nil
}

// CacheOptions limit what the manager caches: of all pods only those the
// operator renders (it watches them for agent status), not every pod of the
// cluster; and, when namespaces are given, only objects in those namespaces
// (namespace-scoped mode: the manager then needs Roles only there). No
// namespaces means every namespace.
func CacheOptions(namespaces ...string) cache.Options {
	sel := labels.SelectorFromSet(labels.Set{labelName: "stevedore"})
	opts := cache.Options{ByObject: map[client.Object]cache.ByObject{
		&corev1.Pod{}: {Label: sel},
	}}
	if len(namespaces) > 0 {
		opts.DefaultNamespaces = make(map[string]cache.Config, len(namespaces))
		for _, ns := range namespaces {
			opts.DefaultNamespaces[ns] = cache.Config{}
		}
	}
	return opts
}
