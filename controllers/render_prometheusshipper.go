package controllers

import (
	"fmt"
	"maps"
	"strconv"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/yaml"

	"github.com/stevedore-dev/stevedore/api/v1alpha1"
)

const (
	prometheusConfigKey  = "prometheus.yaml.tmpl"
	prometheusConfigDir  = "/etc/prometheus/config"
	prometheusConfigOut  = "/etc/prometheus/config_out"
	prometheusConfigFile = "prometheus.yaml"
	prometheusTSDBPath   = "/prometheus"
	defaultBlockDuration = "2h"
)

// shipperObjects are the children of a PrometheusShipper.
type shipperObjects struct {
	Config      *corev1.ConfigMap
	Service     *corev1.Service
	StatefulSet *appsv1.StatefulSet
}

// shipperConfigName is the ConfigMap holding the rendered Prometheus config.
func shipperConfigName(name string) string { return name + "-prometheus-config" }

// renderPrometheusConfig merges the user's configuration (without its global
// section) with the external labels. The replica label's value is
// $(POD_NAME), which the agent's reloader substitutes per pod.
func renderPrometheusConfig(p *v1alpha1.PrometheusShipper, userConfig string) ([]byte, error) {
	doc := map[string]any{}
	if userConfig != "" {
		if err := yaml.Unmarshal([]byte(userConfig), &doc); err != nil {
			return nil, &configError{ReasonInvalidConfig, fmt.Sprintf("scrape config is not valid YAML: %v", err)}
		}
		if doc == nil {
			doc = map[string]any{}
		}
	}
	global, _ := doc["global"].(map[string]any)
	if global == nil {
		global = map[string]any{}
	}
	labels := map[string]any{}
	for k, v := range p.Spec.Prometheus.ExternalLabels {
		labels[k] = v
	}
	labels[replicaLabel(p)] = "$(POD_NAME)"
	global["external_labels"] = labels
	doc["global"] = global
	return yaml.Marshal(doc)
}

func replicaLabel(p *v1alpha1.PrometheusShipper) string {
	return defaultString(p.Spec.Prometheus.ReplicaLabel, "prometheus_replica")
}

// renderPrometheusShipper renders the Prometheus StatefulSet with the agent
// sidecar, its config and a headless Service for the StoreAPI.
func renderPrometheusShipper(p *v1alpha1.PrometheusShipper, bucket *bucketInputs, promConfig []byte, defaultImage string) *shipperObjects {
	labels := commonLabels(componentShipper, p.Name)
	selector := selectorLabels(componentShipper, p.Name)
	prom := &p.Spec.Prometheus
	out := &shipperObjects{}

	out.Config = &corev1.ConfigMap{
		TypeMeta:   metav1.TypeMeta{APIVersion: "v1", Kind: "ConfigMap"},
		ObjectMeta: metav1.ObjectMeta{Name: shipperConfigName(p.Name), Namespace: p.Namespace, Labels: labels},
		Data:       map[string]string{prometheusConfigKey: string(promConfig)},
	}
	out.Service = &corev1.Service{
		TypeMeta: metav1.TypeMeta{APIVersion: "v1", Kind: "Service"},
		ObjectMeta: metav1.ObjectMeta{
			Name:      p.Name,
			Namespace: p.Namespace,
			Labels:    withLabels(labels, map[string]string{LabelStoreAPI: "true"}),
		},
		Spec: corev1.ServiceSpec{
			ClusterIP: corev1.ClusterIPNone,
			Selector:  selector,
			Ports: servicePorts(corev1.ServicePort{
				Name: "web", Port: portPrometheus, TargetPort: intstr.FromString("web"), Protocol: corev1.ProtocolTCP,
			}),
		},
	}

	blockDuration := defaultBlockDuration
	if prom.BlockDuration != nil && prom.BlockDuration.Duration > 0 {
		blockDuration = promDuration(prom.BlockDuration.Duration)
	}
	promContainer := corev1.Container{
		Name:            "prometheus",
		Image:           defaultString(prom.Image, "quay.io/prometheus/prometheus:v3.15.0"),
		ImagePullPolicy: prom.ImagePullPolicy,
		Args: []string{
			"--config.file=" + prometheusConfigOut + "/" + prometheusConfigFile,
			"--storage.tsdb.path=" + prometheusTSDBPath,
			"--storage.tsdb.retention.time=" + defaultString(prom.Retention, "24h"),
			// Equal min and max block durations: Prometheus never compacts
			// blocks the agent is shipping (the Thanos sidecar requirement).
			"--storage.tsdb.min-block-duration=" + blockDuration,
			"--storage.tsdb.max-block-duration=" + blockDuration,
			"--web.enable-lifecycle",
			"--web.listen-address=:" + strconv.Itoa(portPrometheus),
			"--web.route-prefix=/",
		},
		Ports: []corev1.ContainerPort{{Name: "web", ContainerPort: portPrometheus, Protocol: corev1.ProtocolTCP}},
		ReadinessProbe: &corev1.Probe{
			ProbeHandler:     corev1.ProbeHandler{HTTPGet: &corev1.HTTPGetAction{Path: "/-/ready", Port: intstr.FromString("web")}},
			PeriodSeconds:    5,
			FailureThreshold: 3,
			TimeoutSeconds:   3,
		},
		LivenessProbe: &corev1.Probe{
			ProbeHandler:     corev1.ProbeHandler{HTTPGet: &corev1.HTTPGetAction{Path: "/-/healthy", Port: intstr.FromString("web")}},
			PeriodSeconds:    15,
			FailureThreshold: 6,
			TimeoutSeconds:   3,
		},
		Resources: prom.Resources,
		VolumeMounts: []corev1.VolumeMount{
			{Name: "config-out", MountPath: prometheusConfigOut, ReadOnly: true},
			{Name: "data", MountPath: prometheusTSDBPath},
		},
		SecurityContext:          restrictedContainer(),
		TerminationMessagePolicy: corev1.TerminationMessageFallbackToLogsOnError,
	}

	args := []string{
		"sidecar",
		"--prometheus.url=http://localhost:" + strconv.Itoa(portPrometheus),
		"--tsdb.path=" + prometheusTSDBPath,
		"--reloader.config-file=" + prometheusConfigDir + "/" + prometheusConfigKey,
		"--reloader.config-envsubst-file=" + prometheusConfigOut + "/" + prometheusConfigFile,
	}
	if p.Spec.Shipper.UploadCompacted {
		args = append(args, "--shipper.upload-compacted")
	}
	if p.Spec.Shipper.MinTime != "" {
		args = append(args, "--min-time="+p.Spec.Shipper.MinTime)
	}
	if p.Spec.Shipper.HashFunc != "" {
		args = append(args, "--hash-func="+string(p.Spec.Shipper.HashFunc))
	}
	agent := agentContainer(p.Spec.Agent, defaultImage, args)
	agent.Env = []corev1.EnvVar{{Name: "POD_NAME", ValueFrom: &corev1.EnvVarSource{
		FieldRef: &corev1.ObjectFieldSelector{APIVersion: "v1", FieldPath: "metadata.name"},
	}}}
	agent.VolumeMounts = append(agent.VolumeMounts,
		corev1.VolumeMount{Name: "config", MountPath: prometheusConfigDir, ReadOnly: true},
		corev1.VolumeMount{Name: "config-out", MountPath: prometheusConfigOut},
		corev1.VolumeMount{Name: "data", MountPath: prometheusTSDBPath},
	)
	// The agent runs as a native sidecar (an init container that keeps
	// running): the kubelet starts it, and waits for its startup probe, before
	// Prometheus, so the reloader has written the config Prometheus reads.
	agent.RestartPolicy = ptr.To(corev1.ContainerRestartPolicyAlways)
	agent.StartupProbe = &corev1.Probe{
		ProbeHandler:     corev1.ProbeHandler{HTTPGet: &corev1.HTTPGetAction{Path: "/-/healthy", Port: intstr.FromString("http")}},
		PeriodSeconds:    1,
		FailureThreshold: 120,
	}

	volumes, claims := dataVolume(prom.Storage)
	volumes = append([]corev1.Volume{
		objstoreVolume(bucket.SecretName),
		{Name: "config", VolumeSource: corev1.VolumeSource{ConfigMap: &corev1.ConfigMapVolumeSource{
			LocalObjectReference: corev1.LocalObjectReference{Name: out.Config.Name},
		}}},
		{Name: "config-out", VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{}}},
	}, volumes...)
	spec := corev1.PodSpec{
		InitContainers:                []corev1.Container{agent},
		Containers:                    []corev1.Container{promContainer},
		Volumes:                       volumes,
		SecurityContext:               podSecurityContext(),
		TerminationGracePeriodSeconds: ptr.To[int64](600),
	}
	// The Prometheus config is reloaded by the agent when it changes; the
	// objstore config is read once at start, so its hash rolls the pods.
	hash := hashInputs(map[string][]byte{"objstore": bucket.Data[objstoreKey]})
	podLabels := withLabels(labels, map[string]string{LabelStoreAPI: "true"})
	tmpl := podTemplate(podLabels, p.Spec.Pod, hash, spec)
	if tmpl.Spec.Affinity == nil {
		tmpl.Spec.Affinity = spreadReplicas(maps.Clone(selector))
	}
	out.StatefulSet = &appsv1.StatefulSet{
		TypeMeta:   metav1.TypeMeta{APIVersion: "apps/v1", Kind: "StatefulSet"},
		ObjectMeta: metav1.ObjectMeta{Name: p.Name, Namespace: p.Namespace, Labels: labels},
		Spec: appsv1.StatefulSetSpec{
			Replicas:             ptr.To(ptr.Deref(prom.Replicas, 1)),
			Selector:             &metav1.LabelSelector{MatchLabels: selector},
			ServiceName:          p.Name,
			PodManagementPolicy:  appsv1.ParallelPodManagement,
			Template:             tmpl,
			VolumeClaimTemplates: claims,
		},
	}
	return out
}

// promDuration formats d as Prometheus durations are written (2h, 90m, 30s).
func promDuration(d time.Duration) string {
	switch {
	case d%time.Hour == 0:
		return strconv.FormatInt(int64(d/time.Hour), 10) + "h"
	case d%time.Minute == 0:
		return strconv.FormatInt(int64(d/time.Minute), 10) + "m"
	case d%time.Second == 0:
		return strconv.FormatInt(int64(d/time.Second), 10) + "s"
	default:
		return d.String()
	}
}
