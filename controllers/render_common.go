package controllers

import (
	"maps"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/utils/ptr"

	"github.com/stevedore-dev/stevedore/api/v1alpha1"
)

// bucketInputs is what a workload takes from the Bucket it uses.
type bucketInputs struct {
	// SecretName holds the objstore config under objstoreKey.
	SecretName string
	// Data of that Secret; hashed into the pod template.
	Data map[string][]byte
}

// agentContainer is the agent container common to both modes: image, ports,
// probes, the objstore config mount.
func agentContainer(spec v1alpha1.AgentSpec, defaultImage string, args []string) corev1.Container {
	image := spec.Image
	if image == "" {
		image = defaultImage
	}
	logLevel := spec.LogLevel
	if logLevel == "" {
		logLevel = "info"
	}
	args = append(args,
		"--grpc-address=0.0.0.0:10901",
		"--http-address=0.0.0.0:10902",
		"--log.level="+logLevel,
		"--objstore.config-file="+objstoreMountPath+"/"+objstoreKey,
	)
	return corev1.Container{
		Name:            "agent",
		Image:           image,
		ImagePullPolicy: spec.ImagePullPolicy,
		Args:            args,
		Ports: []corev1.ContainerPort{
			{Name: "grpc", ContainerPort: portGRPC, Protocol: corev1.ProtocolTCP},
			{Name: "http", ContainerPort: portHTTP, Protocol: corev1.ProtocolTCP},
		},
		LivenessProbe: &corev1.Probe{
			ProbeHandler:     corev1.ProbeHandler{HTTPGet: &corev1.HTTPGetAction{Path: "/-/healthy", Port: intstr.FromString("http")}},
			PeriodSeconds:    30,
			FailureThreshold: 4,
			TimeoutSeconds:   5,
		},
		ReadinessProbe: &corev1.Probe{
			ProbeHandler:     corev1.ProbeHandler{HTTPGet: &corev1.HTTPGetAction{Path: "/-/ready", Port: intstr.FromString("http")}},
			PeriodSeconds:    5,
			FailureThreshold: 3,
			TimeoutSeconds:   3,
		},
		Resources: spec.Resources,
		VolumeMounts: []corev1.VolumeMount{
			{Name: "objstore", MountPath: objstoreMountPath, ReadOnly: true},
		},
		SecurityContext:          restrictedContainer(),
		TerminationMessagePolicy: corev1.TerminationMessageFallbackToLogsOnError,
	}
}

// objstoreVolume mounts the Bucket's rendered config Secret.
func objstoreVolume(secretName string) corev1.Volume {
	return corev1.Volume{Name: "objstore", VolumeSource: corev1.VolumeSource{Secret: &corev1.SecretVolumeSource{
		SecretName: secretName,
		Items:      []corev1.KeyToPath{{Key: objstoreKey, Path: objstoreKey}},
	}}}
}

// podTemplate applies the user's pod settings to a pod template.
func podTemplate(labels map[string]string, settings v1alpha1.PodSettings, configHash string, spec corev1.PodSpec) corev1.PodTemplateSpec {
	ann := maps.Clone(settings.Annotations)
	if ann == nil {
		ann = map[string]string{}
	}
	ann[AnnotationConfigHash] = configHash
	spec.ServiceAccountName = settings.ServiceAccountName
	spec.NodeSelector = settings.NodeSelector
	spec.Tolerations = settings.Tolerations
	spec.Affinity = settings.Affinity
	return corev1.PodTemplateSpec{
		ObjectMeta: metav1.ObjectMeta{Labels: labels, Annotations: ann},
		Spec:       spec,
	}
}

// podSecurityContext runs pods as nobody with the volumes writable by it (the
// Prometheus image's user), as the restricted Pod Security Standard wants.
func podSecurityContext() *corev1.PodSecurityContext {
	return &corev1.PodSecurityContext{
		RunAsNonRoot:   ptr.To(true),
		RunAsUser:      ptr.To[int64](65534),
		RunAsGroup:     ptr.To[int64](65534),
		FSGroup:        ptr.To[int64](65534),
		SeccompProfile: &corev1.SeccompProfile{Type: corev1.SeccompProfileTypeRuntimeDefault},
	}
}

func restrictedContainer() *corev1.SecurityContext {
	return &corev1.SecurityContext{
		AllowPrivilegeEscalation: ptr.To(false),
		ReadOnlyRootFilesystem:   ptr.To(true),
		Capabilities:             &corev1.Capabilities{Drop: []corev1.Capability{"ALL"}},
	}
}

// dataVolume is the emptyDir used when no storage is configured; with storage
// the StatefulSet's volumeClaimTemplate of the same name takes its place.
func dataVolume(storage *v1alpha1.StorageSpec) ([]corev1.Volume, []corev1.PersistentVolumeClaim) {
	if storage == nil {
		return []corev1.Volume{{Name: "data", VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{}}}}, nil
	}
	return nil, []corev1.PersistentVolumeClaim{{
		TypeMeta:   metav1.TypeMeta{APIVersion: "v1", Kind: "PersistentVolumeClaim"},
		ObjectMeta: metav1.ObjectMeta{Name: "data"},
		Spec:       storage.VolumeClaimTemplate,
	}}
}

func servicePorts(extra ...corev1.ServicePort) []corev1.ServicePort {
	return append([]corev1.ServicePort{
		{Name: "grpc", Port: portGRPC, TargetPort: intstr.FromString("grpc"), Protocol: corev1.ProtocolTCP},
		{Name: "http", Port: portHTTP, TargetPort: intstr.FromString("http"), Protocol: corev1.ProtocolTCP},
	}, extra...)
}
