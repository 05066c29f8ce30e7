package controllers

import (
	"fmt"
	"sort"
	"strconv"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/stevedore-dev/stevedore/api/v1alpha1"
)

// updateStatus computes per-shard sync state and the Ready and Synced
// conditions from the last agent observations and, for pods that are not
// ready, from what keeps them from running.
func (r *StoreGatewayReconciler) updateStatus(g *v1alpha1.StoreGateway, pods []corev1.Pod, obs map[string]observation, problems map[string]*podProblem) {
	n := g.ShardCount()
	byShard := make([][]corev1.Pod, n)
	for _, p := range pods {
		k, err := strconv.Atoi(p.Labels[LabelShard])
		if err != nil || k < 0 || k >= int(n) || p.DeletionTimestamp != nil {
			continue
		}
		byShard[k] = append(byShard[k], p)
	}

	st := &g.Status
	st.Shards = make([]v1alpha1.ShardStatus, n)
	st.Blocks, st.LastSync, st.MinTime, st.MaxTime = 0, nil, nil, nil
	var (
		readyShards                            int32
		syncErrs, unreachable, syncing, nopods []string
		syncedShards                           int32
		podProblems                            []*podProblem // of shards without a ready replica
	)
	for k := range n {
		ss := shardStatus(k, byShard[k], obs, problems)
		if ss.ReadyReplicas == 0 {
			podProblems = append(podProblems, ss.problems...)
		}
		st.Shards[k] = ss.ShardStatus
		if ss.ReadyReplicas > 0 {
			readyShards++
		}
		st.Blocks += ss.Blocks
		st.LastSync = minTime(st.LastSync, ss.LastSync)
		st.MinTime = minTime(st.MinTime, ss.MinTime)
		st.MaxTime = maxTime(st.MaxTime, ss.MaxTime)
		switch {
		case len(byShard[k]) == 0:
			nopods = append(nopods, strconv.Itoa(int(k)))
		case ss.syncErr != "":
			syncErrs = append(syncErrs, fmt.Sprintf("shard %d: %s", k, ss.syncErr))
		case ss.reporting == 0:
			unreachable = append(unreachable, fmt.Sprintf("shard %d: %s", k, ss.LastError))
		case !ss.synced:
			syncing = append(syncing, strconv.Itoa(int(k)))
		default:
			syncedShards++
		}
	}
	st.ReadyShards = fmt.Sprintf("%d/%d", readyShards, n)

	var synced metav1.Condition
	switch {
	case len(syncErrs) > 0:
		synced = condition(v1alpha1.ConditionSynced, metav1.ConditionFalse, ReasonSyncFailed, strings.Join(syncErrs, "; "))
	case len(nopods) > 0:
		synced = condition(v1alpha1.ConditionSynced, metav1.ConditionUnknown, ReasonWaitingForAgents, "no pods yet for shard(s) "+strings.Join(nopods, ", "))
	case len(unreachable) > 0:
		synced = condition(v1alpha1.ConditionSynced, metav1.ConditionUnknown, ReasonAgentUnreachable, strings.Join(unreachable, "; "))
	case len(syncing) > 0:
		synced = condition(v1alpha1.ConditionSynced, metav1.ConditionFalse, ReasonInitialSync, "initial bucket sync in progress for shard(s) "+strings.Join(syncing, ", "))
	default:
		synced = condition(v1alpha1.ConditionSynced, metav1.ConditionTrue, ReasonSynced, fmt.Sprintf("%d shard(s) synced, %d block(s) loaded", syncedShards, st.Blocks))
	}
	r.status.setCondition(g, &st.Conditions, synced)

	switch {
	case readyShards == n && synced.Status == metav1.ConditionTrue:
		r.status.setCondition(g, &st.Conditions, condition(v1alpha1.ConditionReady, metav1.ConditionTrue, ReasonReady, fmt.Sprintf("all %d shard(s) serving", n)))
	case readyShards < n && len(podProblems) > 0:
		reason, msg := summarizeProblems(podProblems, maxProblemsInMessage)
		r.status.setCondition(g, &st.Conditions, condition(v1alpha1.ConditionReady, metav1.ConditionFalse, reason, fmt.Sprintf("%d/%d shard(s) have a ready replica: %s", readyShards, n, msg)))
	case readyShards < n:
		r.status.setCondition(g, &st.Conditions, condition(v1alpha1.ConditionReady, metav1.ConditionFalse, ReasonNotReady, fmt.Sprintf("%d/%d shard(s) have a ready replica", readyShards, n)))
	default:
		r.status.setCondition(g, &st.Conditions, condition(v1alpha1.ConditionReady, metav1.ConditionFalse, synced.Reason, synced.Message))
	}
}

type shardSummary struct {
	v1alpha1.ShardStatus
	reporting int  // replicas whose agent answered the last poll
	synced    bool // some replica finished its initial sync without error
	syncErr   string
	problems  []*podProblem // of replicas that fail, or are starting with no agent status
}

// shardStatus folds the replicas of one shard: blocks is the smallest count,
// last sync the oldest, so the shard is described by its least advanced replica.
func shardStatus(k int32, pods []corev1.Pod, obs map[string]observation, problems map[string]*podProblem) shardSummary {
	sort.Slice(pods, func(i, j int) bool { return pods[i].Name < pods[j].Name })
	ss := shardSummary{ShardStatus: v1alpha1.ShardStatus{Shard: k}}
	first := true
	var errs []string
	for _, p := range pods {
		o := obs[p.Name]
		pp := problems[p.Name]
		agentReports := o.Err == nil && o.Status != nil && o.Status.Store != nil
		if pp != nil && (!pp.starting() || !agentReports) {
			ss.problems = append(ss.problems, pp)
			errs = append(errs, podProblemDetail(pp, o))
		}
		if pp != nil && !agentReports {
			continue
		}
		if o.Err != nil {
			errs = append(errs, fmt.Sprintf("pod %s: agent status: %v", p.Name, o.Err))
			continue
		}
		if o.Status == nil || o.Status.Store == nil {
			if o.Status == nil {
				errs = append(errs, fmt.Sprintf("pod %s: waiting for the first agent status", p.Name))
			} else {
				errs = append(errs, fmt.Sprintf("pod %s: agent is not a store gateway (%s)", p.Name, o.Status.Component))
			}
			continue
		}
		ss.reporting++
		s := o.Status.Store
		if o.Status.Ready {
			ss.ReadyReplicas++
		}
		if s.LastSyncError != "" {
			ss.syncErr = fmt.Sprintf("pod %s: %s", p.Name, s.LastSyncError)
			errs = append(errs, ss.syncErr)
		} else if s.InitialSyncDone {
			ss.synced = true
		}
		if first || s.BlocksLoaded < ss.Blocks {
			ss.Blocks = s.BlocksLoaded
		}
		if s.LastSyncTime != nil {
			t := &metav1.Time{Time: s.LastSyncTime.Truncate(time.Second)}
			if first {
				ss.LastSync = t
			} else {
				ss.LastSync = minTime(ss.LastSync, t)
			}
		}
		ss.MinTime = minTime(ss.MinTime, unixMilli(s.MinTime))
		ss.MaxTime = maxTime(ss.MaxTime, unixMilli(s.MaxTime))
		ss.IndexHeaderBytes = max(ss.IndexHeaderBytes, s.IndexHeaderBytes)
		first = false
	}
	ss.LastError = truncate(strings.Join(errs, "; "), 1024)
	return ss
}

func unixMilli(ms int64) *metav1.Time {
	if ms == 0 {
		return nil
	}
	return &metav1.Time{Time: time.UnixMilli(ms).UTC().Truncate(time.Second)}
}

func minTime(a, b *metav1.Time) *metav1.Time {
	if a == nil {
		return b
	}
	if b == nil || a.Before(b) {
		return a
	}
	return b
}

func maxTime(a, b *metav1.Time) *metav1.Time {
	if a == nil {
		return b
	}
	if b != nil && b.After(a.Time) {
		return b
	}
	return a
}
