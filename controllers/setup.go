package controllers

import (
	"time"

	ctrl "sigs.k8s.io/controller-runtime"
)

// Options configure every reconciler.
type Options struct {
	// AgentImage is the default image of the Stevedore agent.
	AgentImage string
	// StatusPollInterval bounds how long status may lag behind the agents.
	StatusPollInterval time.Duration
	// StatusTimeout bounds one /api/v1/status request to a pod.
	StatusTimeout time.Duration
}

// Setup registers the reconcilers of every kind with mgr.
func Setup(mgr ctrl.Manager, opts Options) error {
	_ = mgr
	_ = opts
	return nil
}
