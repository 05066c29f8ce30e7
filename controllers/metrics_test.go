package controllers

import (
	"path/filepath"
	"testing"
	"time"

	ctrlmetrics "sigs.k8s.io/controller-runtime/pkg/metrics"
)

// TestMetrics checks that reconciles, errors and durations are exported per
// kind (by controller-runtime) and that the operator's own metrics count child
// writes and probes.
func TestMetrics(t *testing.T) {
	requireEnv(t)
	ns := newNamespace(t)
	for _, s := range []string{"shipper.yaml", "storegateway.yaml"} {
		mustKubectl(t, nil, "apply", "-n", ns, "-f", filepath.Join("..", "config", "samples", s))
	}
	eventually(t, 60*time.Second, "metrics", func() error {
		ctrlFams, err := ctrlmetrics.Registry.Gather()
		if err != nil {
			return err
		}
		ownFams, err := testReg.Gather()
		if err != nil {
			return err
		}
		have := map[string]bool{}
		for _, f := range append(ctrlFams, ownFams...) {
			for _, m := range f.GetMetric() {
				for _, l := range m.GetLabel() {
					have[f.GetName()+"/"+l.GetName()+"="+l.GetValue()] = true
				}
				if len(m.GetLabel()) == 0 {
					have[f.GetName()] = true
				}
			}
		}
		for _, want := range []string{
			"controller_runtime_reconcile_total/controller=bucket",
			"controller_runtime_reconcile_total/controller=prometheusshipper",
			"controller_runtime_reconcile_total/controller=storegateway",
			"controller_runtime_reconcile_errors_total/controller=storegateway",
			"controller_runtime_reconcile_time_seconds/controller=prometheusshipper",
			"stevedore_operator_child_applies_total/kind=StatefulSet",
			"stevedore_operator_child_applies_total/result=created",
			"stevedore_operator_bucket_probes_total/result=error",
			"stevedore_operator_resource_condition/kind=StoreGateway",
		} {
			if !have[want] {
				return errorf("no %s", want)
			}
		}
		return nil
	})
}
