package main

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"text/template"
)

// The configuration files of the node's daemons. Everything the cluster
// writes lives under the state directory, so nothing on the host (/etc,
// /var/lib, /run) is touched and `down` removes it all.

const containerdConfig = `version = 2
root = "{{.Dir}}/containerd/root"
state = "{{.Dir}}/containerd/state"
# Snapshotters and exporters this node has no use for; disabling them keeps
# the log free of their start-up failures.
disabled_plugins = [
  "io.containerd.snapshotter.v1.aufs",
  "io.containerd.snapshotter.v1.btrfs",
  "io.containerd.snapshotter.v1.devmapper",
  "io.containerd.snapshotter.v1.zfs",
  "io.containerd.tracing.processor.v1.otlp",
  "io.containerd.internal.v1.tracing",
]

[grpc]
  address = "{{.Dir}}/containerd/containerd.sock"

[ttrpc]
  address = "{{.Dir}}/containerd/containerd.sock.ttrpc"

[plugins."io.containerd.internal.v1.opt"]
  path = "{{.Dir}}/containerd/opt"

[plugins."io.containerd.grpc.v1.cri"]
  # Imported, never pulled: the node has no route to any registry.
  sandbox_image = "{{.PauseImage}}"
  # Lowering a process's oom_score_adj needs CAP_SYS_RESOURCE, which these
  # machines do not grant; clamp to containerd's own score instead of failing.
  restrict_oom_score_adj = true
  enable_selinux = false
  stream_server_address = "127.0.0.1"
  # Pod network namespaces under the state directory, not /run/netns, so
  # "down" leaves nothing behind on the host.
  netns_mounts_under_state_dir = true
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        BinaryName = "{{.Runc}}"
        Root = "{{.Dir}}/runc"
        SystemdCgroup = false
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "{{.CNIBinDir}}"
    conf_dir = "{{.Dir}}/cni/net.d"
`

// The pod network: one Linux bridge in the node's network namespace,
// addresses from host-local IPAM. Hairpin mode lets a pod reach itself
// through its own Service.
const cniConfig = `{
  "cniVersion": "1.0.0",
  "name": "stevedore",
  "plugins": [
    {
      "type": "bridge",
      "bridge": "cni0",
      "isGateway": true,
      "ipMasq": false,
      "hairpinMode": true,
      "ipam": {
        "type": "host-local",
        "dataDir": "{{.Dir}}/cni/ipam",
        "ranges": [[{"subnet": "{{.PodCIDR}}", "gateway": "{{.PodGateway}}"}]],
        "routes": [{"dst": "0.0.0.0/0"}]
      }
    },
    {"type": "portmap", "capabilities": {"portMappings": true}}
  ]
}
`

const kubeletConfig = `apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
address: {{.NodeIP}}
readOnlyPort: 0
tlsCertFile: {{.Dir}}/pki/kubelet.crt
tlsPrivateKeyFile: {{.Dir}}/pki/kubelet.key
authentication:
  anonymous:
    enabled: false
  webhook:
    enabled: true
  x509:
    clientCAFile: {{.Dir}}/pki/ca.crt
authorization:
  mode: Webhook
containerRuntimeEndpoint: unix://{{.Dir}}/containerd/containerd.sock
cgroupDriver: cgroupfs
# Pods live under one cgroup of their own, removed by "down".
cgroupRoot: /{{.Name}}
clusterDNS: [{{.NodeIP}}]
clusterDomain: cluster.local
resolvConf: {{.Dir}}/resolv.conf
failSwapOn: false
# Disk use of a shared machine is not this node's to police: evict only when
# nearly full, and never garbage-collect the imported images (they cannot be
# pulled back).
evictionHard:
  memory.available: 100Mi
  nodefs.available: 1%
  nodefs.inodesFree: 1%
  imagefs.available: 1%
imageGCHighThresholdPercent: 100
imageGCLowThresholdPercent: 99
serializeImagePulls: false
podLogsDir: {{.Dir}}/pod-logs
# Lowering its own OOM score needs CAP_SYS_RESOURCE.
oomScoreAdj: 0
# Kernel settings are the machine's: kubelet would otherwise rewrite
# vm.overcommit_memory and kernel.panic*. (The node's mount namespace shows
# it the values it wants; see node.go.)
protectKernelDefaults: true
staticPodPath: ""
`

const kubeProxyConfig = `apiVersion: kubeproxy.config.k8s.io/v1alpha1
kind: KubeProxyConfiguration
clientConnection:
  kubeconfig: {{.Dir}}/kube-proxy.kubeconfig
hostnameOverride: {{.NodeName}}
bindAddress: {{.NodeIP}}
healthzBindAddress: 127.0.0.1:10256
metricsBindAddress: 127.0.0.1:10249
mode: iptables
clusterCIDR: {{.ClusterCIDR}}
# Conntrack table sizes are global kernel settings; leave them alone.
conntrack:
  maxPerCore: 0
  min: 0
  tcpEstablishedTimeout: 0s
  tcpCloseWaitTimeout: 0s
`

const corefile = `.:53 {
    bind {{.NodeIP}}
    errors
    health 127.0.0.1:8080
    ready 127.0.0.1:8181
    kubernetes cluster.local in-addr.arpa ip6.arpa {
        kubeconfig {{.Dir}}/coredns.kubeconfig
        pods insecure
        fallthrough in-addr.arpa ip6.arpa
    }
    cache 5
    loadbalance
}
`

const kubeconfigTmpl = `apiVersion: v1
kind: Config
clusters:
- name: {{.Cluster}}
  cluster:
    server: {{.Server}}
    certificate-authority: {{.CA}}
users:
- name: {{.User}}
  user:
    client-certificate: {{.Cert}}
    client-key: {{.Key}}
contexts:
- name: {{.Cluster}}
  context:
    cluster: {{.Cluster}}
    user: {{.User}}
current-context: {{.Cluster}}
`

// rbacManifest grants the identities that are not covered by Kubernetes's
// bootstrap policy what they need: CoreDNS reads Services and EndpointSlices;
// the API server calls the kubelet for logs, exec and port-forward.
const rbacManifest = `apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata:
  name: stevedore-cluster:coredns
rules:
- apiGroups: [""]
  resources: [endpoints, services, pods, namespaces]
  verbs: [list, watch]
- apiGroups: [discovery.k8s.io]
  resources: [endpointslices]
  verbs: [list, watch]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata:
  name: stevedore-cluster:coredns
roleRef:
  apiGroup: rbac.authorization.k8s.io
  kind: ClusterRole
  name: stevedore-cluster:coredns
subjects:
- apiGroup: rbac.authorization.k8s.io
  kind: User
  name: stevedore-cluster:coredns
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata:
  name: stevedore-cluster:apiserver-kubelet
roleRef:
  apiGroup: rbac.authorization.k8s.io
  kind: ClusterRole
  name: system:kubelet-api-admin
subjects:
- apiGroup: rbac.authorization.k8s.io
  kind: User
  name: kube-apiserver-kubelet-client
`

// render executes a template with data and writes the result to path.
func render(path, tmpl string, data any) error {
	t, err := template.New(filepath.Base(path)).Option("missingkey=error").Parse(tmpl)
	if err != nil {
		return fmt.Errorf("parse template for %s: %w", path, err)
	}
	var buf bytes.Buffer
	if err := t.Execute(&buf, data); err != nil {
		return fmt.Errorf("render %s: %w", path, err)
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return fmt.Errorf("create dir for %s: %w", path, err)
	}
	if err := os.WriteFile(path, buf.Bytes(), 0o644); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	return nil
}
