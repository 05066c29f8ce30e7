package controllers

import (
	"encoding/json"
	"fmt"
	"strconv"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/utils/ptr"

	"github.com/stevedore-dev/stevedore/api/v1alpha1"
)

const storeDataDir = "/var/stevedore/data"

// storeGatewayObjects are the children of a StoreGateway.
type storeGatewayObjects struct {
	Service      *corev1.Service
	PDB          *policyv1.PodDisruptionBudget
	StatefulSets []*appsv1.StatefulSet // one per shard, by shard index
}

// renderStoreGateway renders one StatefulSet per shard, one headless Service
// labelled for StoreAPI discovery and one PodDisruptionBudget.
func renderStoreGateway(g *v1alpha1.StoreGateway, bucket *bucketInputs, defaultImage string) (*storeGatewayObjects, error) {
	out := &storeGatewayObjects{}
	labels := commonLabels(componentStore, g.Name)
	selector := selectorLabels(componentStore, g.Name)

	out.Service = &corev1.Service{
		TypeMeta: metav1.TypeMeta{APIVersion: "v1", Kind: "Service"},
		ObjectMeta: metav1.ObjectMeta{
			Name:      g.Name,
			Namespace: g.Namespace,
			Labels:    withLabels(labels, map[string]string{LabelStoreAPI: "true"}),
		},
		Spec: corev1.ServiceSpec{
			// Headless: a querier resolves every pod (dnssrv+_grpc._tcp.<name>.<namespace>.svc)
			// and fans out to all shards.
			ClusterIP: corev1.ClusterIPNone,
			Selector:  selector,
			Ports:     servicePorts(),
		},
	}
	out.PDB = &policyv1.PodDisruptionBudget{
		TypeMeta:   metav1.TypeMeta{APIVersion: "policy/v1", Kind: "PodDisruptionBudget"},
		ObjectMeta: metav1.ObjectMeta{Name: g.Name, Namespace: g.Namespace, Labels: labels},
		Spec: policyv1.PodDisruptionBudgetSpec{
			MaxUnavailable: ptr.To(intstr.FromInt32(1)),
			Selector:       &metav1.LabelSelector{MatchLabels: selector},
		},
	}

	common, err := storeArgs(g)
	if err != nil {
		return nil, err
	}
	hash := hashInputs(map[string][]byte{"objstore": bucket.Data[objstoreKey]})
	shards := g.ShardCount()
	for k := range shards {
		args := append([]string{"store"}, common...)
		if shards > 1 {
			args = append(args, "--selector.relabel-config="+shardRelabelConfig(k, shards))
		}
		shardLabel := map[string]string{LabelShard: strconv.Itoa(int(k))}
		podLabels := withLabels(labels, shardLabel)
		podLabels[LabelStoreAPI] = "true"
		agent := agentContainer(g.Spec.Agent, defaultImage, args)
		agent.VolumeMounts = append(agent.VolumeMounts, corev1.VolumeMount{Name: "data", MountPath: storeDataDir})
		volumes, claims := dataVolume(g.Spec.IndexHeader.Storage)
		spec := corev1.PodSpec{
			Containers:                    []corev1.Container{agent},
			Volumes:                       append([]corev1.Volume{objstoreVolume(bucket.SecretName)}, volumes...),
			SecurityContext:               podSecurityContext(),
			TerminationGracePeriodSeconds: ptr.To[int64](120),
		}
		tmpl := podTemplate(podLabels, g.Spec.Pod, hash, spec)
		if tmpl.Spec.Affinity == nil {
			tmpl.Spec.Affinity = spreadReplicas(withLabels(selector, shardLabel))
		}
		out.StatefulSets = append(out.StatefulSets, &appsv1.StatefulSet{
			TypeMeta: metav1.TypeMeta{APIVersion: "apps/v1", Kind: "StatefulSet"},
			ObjectMeta: metav1.ObjectMeta{
				Name:      shardName(g.Name, k),
				Namespace: g.Namespace,
				Labels:    withLabels(labels, shardLabel),
			},
			Spec: appsv1.StatefulSetSpec{
				Replicas:             ptr.To(max(g.Spec.ReplicasPerShard, 1)),
				Selector:             &metav1.LabelSelector{MatchLabels: withLabels(selector, shardLabel)},
				ServiceName:          g.Name,
				PodManagementPolicy:  appsv1.ParallelPodManagement,
				Template:             tmpl,
				VolumeClaimTemplates: claims,
			},
		})
	}
	return out, nil
}

// storeArgs are the agent flags every shard shares.
func storeArgs(g *v1alpha1.StoreGateway) ([]string, error) {
	s := &g.Spec
	args := []string{
		"--data-dir=" + storeDataDir,
		"--sync-block-duration=" + promDuration(durationOr(s.SyncInterval, defaultSyncInterval)),
	}
	if tr := s.TimeRange; tr != nil {
		if tr.MinTime != "" {
			args = append(args, "--min-time="+tr.MinTime)
		}
		if tr.MaxTime != "" {
			args = append(args, "--max-time="+tr.MaxTime)
		}
	}
	if s.IndexCache != nil {
		c, err := cacheConfig(s.IndexCache)
		if err != nil {
			return nil, fmt.Errorf("index cache: %w", err)
		}
		args = append(args, "--index-cache.config="+c)
	}
	if s.CachingBucket != nil {
		c, err := cacheConfig(s.CachingBucket)
		if err != nil {
			return nil, fmt.Errorf("caching bucket: %w", err)
		}
		args = append(args, "--store.caching-bucket.config="+c)
	}
	if c := s.ChunkDiskCache; c != nil {
		// Bytes: the agent parses sizes like 4GiB, not Kubernetes's 4Gi.
		args = append(args, "--store.chunk-disk-cache-size="+strconv.FormatInt(c.MaxSize.Value(), 10)+"B")
	}
	if s.Limits.SeriesSampleLimit > 0 {
		args = append(args, "--store.grpc.series-sample-limit="+strconv.FormatInt(s.Limits.SeriesSampleLimit, 10))
	}
	if s.Limits.TouchedSeriesLimit > 0 {
		args = append(args, "--store.grpc.touched-series-limit="+strconv.FormatInt(s.Limits.TouchedSeriesLimit, 10))
	}
	conc := s.Limits.SeriesMaxConcurrency
	if conc <= 0 {
		conc = 20
	}
	args = append(args, "--store.grpc.series-max-concurrency="+strconv.Itoa(int(conc)))
	if s.IndexHeader.LazyReader {
		args = append(args, "--store.enable-index-header-lazy-reader")
	}
	return args, nil
}

const defaultSyncInterval = 3 * time.Minute // as Thanos

// shardRelabelConfig keeps the blocks of shard k of n: hashmod of the block ID,
// the relabel config Thanos users write by hand. JSON is YAML and fits one line.
func shardRelabelConfig(k, n int32) string {
	cfg := []map[string]any{
		{"action": "hashmod", "source_labels": []string{"__block_id"}, "target_label": "shard", "modulus": n},
		{"action": "keep", "source_labels": []string{"shard"}, "regex": strconv.Itoa(int(k))},
	}
	b, _ := json.Marshal(cfg)
	return string(b)
}

// cacheConfig renders a cache in Thanos's cache config format.
func cacheConfig(c *v1alpha1.CacheSpec) (string, error) {
	var doc map[string]any
	switch {
	case c.InMemory != nil:
		size := int64(256 << 20)
		if c.InMemory.MaxSize != nil {
			size = c.InMemory.MaxSize.Value()
		}
		doc = map[string]any{"type": "IN-MEMORY", "config": map[string]any{"max_size": fmt.Sprintf("%dB", size)}}
	case c.Memcached != nil:
		doc = map[string]any{"type": "MEMCACHED", "config": map[string]any{"addresses": c.Memcached.Addresses}}
	default:
		return "", fmt.Errorf("neither inMemory nor memcached is set")
	}
	b, err := json.Marshal(doc)
	return string(b), err
}

// spreadReplicas prefers to put the replicas matching labels on different nodes.
func spreadReplicas(labels map[string]string) *corev1.Affinity {
	return &corev1.Affinity{PodAntiAffinity: &corev1.PodAntiAffinity{
		PreferredDuringSchedulingIgnoredDuringExecution: []corev1.WeightedPodAffinityTerm{{
			Weight: 100,
			PodAffinityTerm: corev1.PodAffinityTerm{
				LabelSelector: &metav1.LabelSelector{MatchLabels: labels},
				TopologyKey:   "kubernetes.io/hostname",
			},
		}},
	}}
}
