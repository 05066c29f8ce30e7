package controllers

import (
	"github.com/prometheus/client_golang/prometheus"
)

// metrics are the operator's own metrics. controller-runtime already exports
// controller_runtime_reconcile_total, controller_runtime_reconcile_errors_total
// and controller_runtime_reconcile_time_seconds per controller (one per kind);
// these add what it cannot know: child writes, agent status polls, bucket
// probes and the conditions each resource is in.
type metrics struct {
	applies      *prometheus.CounterVec
	polls        *prometheus.CounterVec
	pollDuration *prometheus.HistogramVec
	probes       *prometheus.CounterVec
	probeDur     prometheus.Histogram
	conditions   *prometheus.GaugeVec
}

func newMetrics(reg prometheus.Registerer) *metrics {
	m := &metrics{
		applies: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "stevedore_operator_child_applies_total",
			Help: "Server-side applies of child objects by kind and result (created, updated, unchanged, skipped, recreated, error).",
		}, []string{"kind", "result"}),
		polls: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "stevedore_operator_agent_status_polls_total",
			Help: "Requests to agents' /api/v1/status by component and result (success, error).",
		}, []string{"component", "result"}),
		pollDuration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "stevedore_operator_agent_status_poll_duration_seconds",
			Help:    "Duration of requests to agents' /api/v1/status.",
			Buckets: []float64{.005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5},
		}, []string{"component"}),
		probes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "stevedore_operator_bucket_probes_total",
			Help: "Bucket reachability probes by result (success, error).",
		}, []string{"result"}),
		probeDur: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "stevedore_operator_bucket_probe_duration_seconds",
			Help:    "Duration of bucket reachability probes.",
			Buckets: []float64{.01, .05, .1, .25, .5, 1, 2.5, 5, 10, 30},
		}),
		conditions: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "stevedore_operator_resource_condition",
			Help: "1 for the status (True, False, Unknown) each condition of each resource is in.",
		}, []string{"kind", "namespace", "name", "type", "status"}),
	}
	if reg != nil {
		reg.MustRegister(m.applies, m.polls, m.pollDuration, m.probes, m.probeDur, m.conditions)
	}
	return m
}
