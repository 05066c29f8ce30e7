// Package server runs the agent's HTTP and gRPC servers with health and
// readiness probes, metrics and graceful shutdown.
package server

import (
	"errors"
	"sync"
)

// Prober tracks whether the process is healthy and ready to serve. It starts
// healthy and not ready; the component marks it ready when it can answer.
type Prober struct {
	mu        sync.RWMutex
	notReady  error
	unhealthy error
	listeners []func(ready bool)
}

var errStarting = errors.New("starting")

// NewProber returns a healthy, not yet ready prober.
func NewProber() *Prober { return &Prober{notReady: errStarting} }

// Ready marks the process ready.
func (p *Prober) Ready() { p.setReady(nil) }

// NotReady marks the process not ready, with the reason /-/ready reports.
func (p *Prober) NotReady(reason error) {
	if reason == nil {
		reason = errors.New("not ready")
	}
	p.setReady(reason)
}

func (p *Prober) setReady(reason error) {
	p.mu.Lock()
	changed := (p.notReady == nil) != (reason == nil)
	p.notReady = reason
	ls := p.listeners
	p.mu.Unlock()
	if changed {
		for _, l := range ls {
			l(reason == nil)
		}
	}
}

// Unhealthy marks the process unhealthy (it should be restarted).
func (p *Prober) Unhealthy(reason error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.unhealthy = reason
}

// IsReady reports readiness and, when not ready, why.
func (p *Prober) IsReady() (bool, error) {
	p.mu.RLock()
	defer p.mu.RUnlock()
	return p.notReady == nil, p.notReady
}

// IsHealthy reports health and, when unhealthy, why.
func (p *Prober) IsHealthy() (bool, error) {
	p.mu.RLock()
	defer p.mu.RUnlock()
	return p.unhealthy == nil, p.unhealthy
}

// OnReadyChange calls fn on every readiness transition.
func (p *Prober) OnReadyChange(fn func(ready bool)) {
	p.mu.Lock()
	p.listeners = append(p.listeners, fn)
	ready := p.notReady == nil
	p.mu.Unlock()
	fn(ready)
}
