package controllers

import (
	"context"
	"errors"
	"net"
	"net/http"
	"reflect"
	"strconv"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/event"

	"github.com/stevedore-dev/stevedore/internal/agentstatus"
)

// PodAddressFunc returns the base URL (http://host:port) at which the agent in
// pod serves its HTTP API, or "" when the pod cannot be reached yet.
type PodAddressFunc func(pod *corev1.Pod) string

// PodIPAddress reaches agents at their pod IP on the agent HTTP port; it is
// the default PodAddressFunc.
func PodIPAddress(pod *corev1.Pod) string {
	if pod.Status.PodIP == "" {
		return ""
	}
	return "http://" + net.JoinHostPort(pod.Status.PodIP, strconv.Itoa(portHTTP))
}

var errNoAddress = errors.New("pod has no address yet")

// observation is what the poller last learned about one pod's agent.
type observation struct {
	// Status is the last document fetched; nil until one was.
	Status *agentstatus.Status
	// Err of the last fetch; Status keeps the last good document.
	Err error
	// Time of the last fetch attempt; zero before the first one completed.
	Time time.Time
}

// statusPoller polls agents' /api/v1/status in the background. Reconciles read
// the last observation and never wait for a pod: a stale observation starts a
// fetch (bounded by timeout) and, when its result differs from what was known,
// the owner is enqueued again through events.
type statusPoller struct {
	component string
	address   PodAddressFunc
	http      *http.Client
	timeout   time.Duration
	interval  time.Duration
	metrics   *metrics
	events    chan event.GenericEvent

	mu   sync.Mutex
	pods map[types.NamespacedName]*podEntry
}

type podEntry struct {
	uid      types.UID
	address  string
	obs      observation
	inflight bool
	lastSeen time.Time
	owner    client.Object
}

func newStatusPoller(component string, address PodAddressFunc, timeout, interval time.Duration, m *metrics) *statusPoller {
	return &statusPoller{
		component: component,
		address:   address,
		http:      &http.Client{Timeout: timeout},
		timeout:   timeout,
		interval:  interval,
		metrics:   m,
		events:    make(chan event.GenericEvent, 1024),
		pods:      map[types.NamespacedName]*podEntry{},
	}
}

// observe returns the last observation of every pod's agent, by pod name, and
// starts a fetch for each one that is older than half the poll interval.
func (p *statusPoller) observe(owner client.Object, pods []corev1.Pod) map[string]observation {
	now := time.Now()
	out := make(map[string]observation, len(pods))
	p.mu.Lock()
	defer p.mu.Unlock()
	for i := range pods {
		pod := &pods[i]
		key := client.ObjectKeyFromObject(pod)
		addr := p.address(pod)
		e := p.pods[key]
		if e == nil || e.uid != pod.UID || e.address != addr {
			e = &podEntry{uid: pod.UID, address: addr}
			p.pods[key] = e
		}
		e.lastSeen = now
		e.owner = owner.DeepCopyObject().(client.Object)
		if addr == "" {
			e.obs = observation{Err: errNoAddress, Time: now}
		} else if !e.inflight && now.Sub(e.obs.Time) >= p.interval/2 {
			e.inflight = true
			go p.fetch(key, e.uid, addr)
		}
		out[pod.Name] = e.obs
	}
	// Forget pods nobody asked about for a while (deleted pods and owners).
	for k, e := range p.pods {
		if now.Sub(e.lastSeen) > 10*p.interval+time.Minute && !e.inflight {
			delete(p.pods, k)
		}
	}
	return out
}

func (p *statusPoller) fetch(key types.NamespacedName, uid types.UID, addr string) {
	ctx, cancel := context.WithTimeout(context.Background(), p.timeout)
	defer cancel()
	start := time.Now()
	st, err := agentstatus.Fetch(ctx, p.http, addr)
	p.metrics.pollDuration.WithLabelValues(p.component).Observe(time.Since(start).Seconds())
	result := "success"
	if err != nil {
		result = "error"
	}
	p.metrics.polls.WithLabelValues(p.component, result).Inc()

	p.mu.Lock()
	e := p.pods[key]
	if e == nil || e.uid != uid || e.address != addr {
		p.mu.Unlock()
		return
	}
	e.inflight = false
	prev := e.obs
	next := observation{Status: prev.Status, Err: err, Time: time.Now()}
	if err == nil {
		next.Status = st
	}
	e.obs = next
	owner := e.owner
	p.mu.Unlock()

	if !sameObservation(prev, next) && owner != nil {
		select {
		case p.events <- event.GenericEvent{Object: owner}:
		default: // The periodic requeue catches up.
		}
	}
}

func sameObservation(a, b observation) bool {
	if (a.Err == nil) != (b.Err == nil) || (a.Err != nil && a.Err.Error() != b.Err.Error()) {
		return false
	}
	return reflect.DeepEqual(a.Status, b.Status)
}
