package main

import (
	"bufio"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// cluster is one single-node cluster: its addresses, binaries and state.
type cluster struct {
	Dir      string // state directory
	Name     string // netns name, veth prefix, cgroup
	NodeName string

	HostIP, NodeIP string // the veth pair's ends (/30)
	ClusterCIDR    string // all pod addresses
	PodCIDR        string // this node's pods
	PodGateway     string
	ServiceCIDR    string
	APIServiceIP   string // first address of ServiceCIDR: the kubernetes Service

	PauseImage string
	Runc       string
	CNIBinDir  string
	KubeBin    string // directory with the Kubernetes binaries
	Etcd       string
	CoreDNS    string
	Containerd string
}

func defaultCluster() *cluster {
	return &cluster{
		Name:         "stevedore",
		NodeName:     "stevedore",
		HostIP:       "10.251.0.1",
		NodeIP:       "10.251.0.2",
		ClusterCIDR:  "10.244.0.0/16",
		PodCIDR:      "10.244.0.0/24",
		PodGateway:   "10.244.0.1",
		ServiceCIDR:  "10.96.0.0/16",
		APIServiceIP: "10.96.0.1",
		PauseImage:   "docker.io/library/stevedore-pause:v1",
		CNIBinDir:    "/usr/lib/cni",
	}
}

// The daemons in start order.
var daemons = []string{"etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler", "containerd", "kubelet", "kube-proxy", "coredns"}

// cgroupHierarchies are the cgroup v1 controllers the node's processes are
// placed in (the kubelet requires cgroup v1 on these machines' containerd).
var cgroupHierarchies = []string{"cpu", "cpuacct", "cpuset", "memory", "devices", "freezer", "blkio", "pids", "systemd"}

// kubeletSysctls are the values the kubelet insists on. Its mount namespace
// shows it files with these values so it neither rewrites the machine's
// settings nor refuses to start (protectKernelDefaults).
var kubeletSysctls = map[string]string{
	"vm/overcommit_memory":      "1",
	"vm/panic_on_oom":           "0",
	"kernel/panic":              "10",
	"kernel/panic_on_oops":      "1",
	"kernel/keys/root_maxkeys":  "1000000",
	"kernel/keys/root_maxbytes": "25000000",
}

func (c *cluster) resolvePaths() error {
	abs, err := filepath.Abs(c.Dir)
	if err != nil {
		return fmt.Errorf("state dir: %w", err)
	}
	c.Dir = abs
	c.KubeBin = os.Getenv("STEVEDORE_KUBE_BIN")
	c.Etcd = os.Getenv("STEVEDORE_ETCD")
	c.CoreDNS = os.Getenv("STEVEDORE_COREDNS")
	c.Runc, _ = exec.LookPath("runc")
	c.Containerd, _ = exec.LookPath("containerd")
	return nil
}

func (c *cluster) path(parts ...string) string {
	return filepath.Join(append([]string{c.Dir}, parts...)...)
}

func (c *cluster) netnsPath() string  { return "/run/netns/" + c.Name }
func (c *cluster) mntnsPath() string  { return c.path("ns", "mnt") }
func (c *cluster) hostVeth() string   { return c.Name + "-host" }
func (c *cluster) nodeVeth() string   { return c.Name + "-node" }
func (c *cluster) kubeconfig() string { return c.path("admin.kubeconfig") }
func (c *cluster) kubectl() string    { return filepath.Join(c.KubeBin, "kubectl") }
func (c *cluster) server() string     { return "https://" + c.NodeIP + ":6443" }

func (c *cluster) preflight() error {
	var problems []string
	if os.Geteuid() != 0 {
		problems = append(problems, "must run as root (network namespaces, mounts, cgroups)")
	}
	need := map[string]string{
		"STEVEDORE_KUBE_BIN": c.KubeBin, "STEVEDORE_ETCD": c.Etcd, "STEVEDORE_COREDNS": c.CoreDNS,
	}
	for _, env := range slices.Sorted(func(yield func(string) bool) {
		for k := range need {
			if !yield(k) {
				return
			}
		}
	}) {
		if need[env] == "" {
			problems = append(problems, env+" is not set: run eval \"$(hack/testbin.sh cluster)\" first")
		}
	}
	if c.KubeBin != "" {
		for _, b := range []string{"kube-apiserver", "kube-controller-manager", "kube-scheduler", "kubelet", "kube-proxy", "kubectl"} {
			if _, err := os.Stat(filepath.Join(c.KubeBin, b)); err != nil {
				problems = append(problems, fmt.Sprintf("%s missing from STEVEDORE_KUBE_BIN", b))
			}
		}
	}
	if c.Containerd == "" || c.Runc == "" {
		problems = append(problems, "containerd and runc are not installed (Debian packages containerd, runc)")
	}
	for _, b := range []string{"bridge", "host-local", "portmap", "loopback"} {
		if _, err := os.Stat(filepath.Join(c.CNIBinDir, b)); err != nil {
			problems = append(problems, "CNI plugin "+b+" missing from "+c.CNIBinDir+" (Debian package containernetworking-plugins)")
		}
	}
	for _, b := range []string{"ip", "nsenter", "unshare", "mount", "iptables", "conntrack", "ctr"} {
		if _, err := exec.LookPath(b); err != nil {
			problems = append(problems, b+" not found in PATH")
		}
	}
	if _, err := os.Stat("/sys/fs/cgroup/memory/memory.limit_in_bytes"); err != nil {
		problems = append(problems, "cgroup v1 memory controller not mounted at /sys/fs/cgroup/memory (the kubelet here needs cgroup v1)")
	}
	if len(problems) > 0 {
		return fmt.Errorf("preflight:\n  - %s", strings.Join(problems, "\n  - "))
	}
	return nil
}

// up starts the cluster. When a healthy cluster already runs it only prints
// how to use it; leftovers of a broken one are torn down first.
func (c *cluster) up(ctx context.Context) error {
	if err := c.preflight(); err != nil {
		return err
	}
	if c.healthy(ctx) {
		progress("cluster %q already up", c.Name)
		c.printUsage()
		return nil
	}
	if _, err := os.Stat(c.Dir); err == nil {
		progress("removing the remains of an earlier cluster in %s", c.Dir)
		if err := c.down(); err != nil {
			return err
		}
	}
	start := time.Now()
	// Every wait fails fast when a daemon that was started has exited.
	ctx = context.WithValue(ctx, watchKey{}, func() string {
		for _, d := range daemons {
			if c.pid(d) > 0 && !c.alive(d) {
				return d
			}
		}
		return ""
	})
	steps := []struct {
		name string
		fn   func(context.Context) error
	}{
		{"writing certificates and configuration", c.writeConfig},
		{"creating network namespace, veth pair and routes", c.setupNetwork},
		{"creating mount namespace and cgroups", c.setupNamespaces},
		{"starting etcd and kube-apiserver", c.startAPIServer},
		{"starting kube-controller-manager and kube-scheduler", c.startControllers},
		{"starting containerd", c.startContainerd},
		{"starting kubelet (waiting for the node to be Ready)", c.startKubelet},
		{"starting kube-proxy and CoreDNS (waiting for Service IPs and DNS)", c.startNetworking},
	}
	for _, s := range steps {
		progress("%s", s.name)
		if err := s.fn(ctx); err != nil {
			return fmt.Errorf("%s: %w\n(logs: %s; clean up: cluster down)", s.name, err, c.path("logs"))
		}
	}
	progress("cluster %q up in %s", c.Name, time.Since(start).Round(time.Second))
	c.printUsage()
	return nil
}

func (c *cluster) printUsage() {
	fmt.Printf("export KUBECONFIG=%s\nexport STEVEDORE_CLUSTER_DIR=%s\n", c.kubeconfig(), c.Dir)
}

func progress(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "cluster: %s %s\n", time.Now().Format("15:04:05"), fmt.Sprintf(format, args...))
}

func (c *cluster) writeConfig(context.Context) error {
	for _, d := range []string{"logs", "pids", "kubelet", "pod-logs", "etcd", "cni/net.d", "cni/ipam", "sysctl", "ns"} {
		if err := os.MkdirAll(c.path(d), 0o755); err != nil {
			return err
		}
	}
	p, err := newPKI(c.path("pki"))
	if err != nil {
		return err
	}
	if err := p.serviceAccountKey(); err != nil {
		return err
	}
	nodeIP, apiIP := net.ParseIP(c.NodeIP), net.ParseIP(c.APIServiceIP)
	specs := []certSpec{
		{name: "apiserver", cn: "kube-apiserver", server: true,
			dns: []string{"localhost", "kubernetes", "kubernetes.default", "kubernetes.default.svc", "kubernetes.default.svc.cluster.local"},
			ips: []net.IP{nodeIP, apiIP, net.IPv4(127, 0, 0, 1)}},
		{name: "apiserver-kubelet-client", cn: "kube-apiserver-kubelet-client"},
		{name: "admin", cn: "stevedore-admin", orgs: []string{"system:masters"}},
		{name: "kube-controller-manager", cn: "system:kube-controller-manager"},
		{name: "kube-scheduler", cn: "system:kube-scheduler"},
		{name: "kubelet", cn: "system:node:" + c.NodeName, orgs: []string{"system:nodes"}, server: true,
			dns: []string{c.NodeName}, ips: []net.IP{nodeIP}},
		{name: "kube-proxy", cn: "system:kube-proxy"},
		{name: "coredns", cn: "stevedore-cluster:coredns"},
	}
	for _, s := range specs {
		if err := p.issue(s); err != nil {
			return err
		}
	}
	for _, kc := range []struct{ file, cert string }{
		{"admin.kubeconfig", "admin"}, {"kube-controller-manager.kubeconfig", "kube-controller-manager"},
		{"kube-scheduler.kubeconfig", "kube-scheduler"}, {"kubelet.kubeconfig", "kubelet"},
		{"kube-proxy.kubeconfig", "kube-proxy"}, {"coredns.kubeconfig", "coredns"},
	} {
		err := render(c.path(kc.file), kubeconfigTmpl, map[string]string{
			"Cluster": c.Name, "Server": c.server(), "CA": p.path("ca.crt"), "User": kc.cert,
			"Cert": p.path(kc.cert + ".crt"), "Key": p.path(kc.cert + ".key"),
		})
		if err != nil {
			return err
		}
	}
	files := []struct{ path, tmpl string }{
		{c.path("containerd", "config.toml"), containerdConfig},
		{c.path("cni", "net.d", "10-stevedore.conflist"), cniConfig},
		{c.path("kubelet-config.yaml"), kubeletConfig},
		{c.path("kube-proxy-config.yaml"), kubeProxyConfig},
		{c.path("Corefile"), corefile},
		{c.path("rbac.yaml"), rbacManifest},
		{c.path("resolv.conf"), "nameserver {{.NodeIP}}\n"},
	}
	for _, f := range files {
		if err := render(f.path, f.tmpl, c); err != nil {
			return err
		}
	}
	for name, v := range kubeletSysctls {
		if err := os.WriteFile(c.path("sysctl", strings.ReplaceAll(name, "/", ".")), []byte(v+"\n"), 0o444); err != nil {
			return err
		}
	}
	return nil
}

func (c *cluster) setupNetwork(ctx context.Context) error {
	host, node := c.hostVeth(), c.nodeVeth()
	cmds := [][]string{
		{"ip", "netns", "add", c.Name},
		{"ip", "link", "add", host, "type", "veth", "peer", "name", node},
		{"ip", "link", "set", node, "netns", c.Name},
		{"ip", "addr", "add", c.HostIP + "/30", "dev", host},
		{"ip", "link", "set", host, "up"},
		{"ip", "-n", c.Name, "link", "set", "lo", "up"},
		{"ip", "-n", c.Name, "addr", "add", c.NodeIP + "/30", "dev", node},
		{"ip", "-n", c.Name, "link", "set", node, "up"},
		// The node's default route leads back to the host, which does not
		// forward (nothing leaves the machine); components that look for a
		// default interface find the node address.
		{"ip", "-n", c.Name, "route", "add", "default", "via", c.HostIP},
		{"ip", "route", "replace", c.ClusterCIDR, "via", c.NodeIP, "dev", host},
		{"ip", "route", "replace", c.ServiceCIDR, "via", c.NodeIP, "dev", host},
		// Per-namespace settings: forwarding between the veth and the pod
		// bridge, and bridged pod-to-pod traffic through kube-proxy's rules.
		{"ip", "netns", "exec", c.Name, "sysctl", "-qw", "net.ipv4.ip_forward=1"},
		{"ip", "netns", "exec", c.Name, "sysctl", "-qw", "net.bridge.bridge-nf-call-iptables=1"},
		{"ip", "netns", "exec", c.Name, "sysctl", "-qw", "net.ipv4.conf.all.route_localnet=1"},
	}
	for _, args := range cmds {
		if err := runCmd(ctx, args...); err != nil {
			return err
		}
	}
	return nil
}

func (c *cluster) setupNamespaces(ctx context.Context) error {
	// A persistent mount namespace is a bind mount of its nsfs file, which
	// must sit on a private mount.
	nsDir := c.path("ns")
	if err := runCmd(ctx, "mount", "--bind", nsDir, nsDir); err != nil {
		return err
	}
	if err := runCmd(ctx, "mount", "--make-private", nsDir); err != nil {
		return err
	}
	if err := os.WriteFile(c.mntnsPath(), nil, 0o644); err != nil {
		return err
	}
	if err := runCmd(ctx, "unshare", "--mount="+c.mntnsPath(), "--propagation", "private", "true"); err != nil {
		return err
	}
	for name := range kubeletSysctls {
		src := c.path("sysctl", strings.ReplaceAll(name, "/", "."))
		if err := runCmd(ctx, "nsenter", "--mount="+c.mntnsPath(), "--", "mount", "--bind", src, "/proc/sys/"+name); err != nil {
			return err
		}
	}
	for _, h := range cgroupHierarchies {
		dir := filepath.Join("/sys/fs/cgroup", h, c.Name, "daemons")
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return fmt.Errorf("create cgroup: %w", err)
		}
		if h == "cpuset" {
			// A new cpuset has no CPUs or memory nodes until given its parent's.
			for _, f := range []string{"cpuset.cpus", "cpuset.mems"} {
				v, err := os.ReadFile(filepath.Join("/sys/fs/cgroup/cpuset", f))
				if err != nil {
					return err
				}
				for _, d := range []string{filepath.Dir(dir), dir} {
					if err := os.WriteFile(filepath.Join(d, f), v, 0o644); err != nil {
						return fmt.Errorf("init %s: %w", d, err)
					}
				}
			}
		}
	}
	return nil
}

// start launches one daemon inside the node's namespaces and cgroup, detached
// from this process, logging to logs/<name>.log.
func (c *cluster) start(name, bin string, args ...string) error {
	logf, err := os.OpenFile(c.path("logs", name+".log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	defer logf.Close()
	// A shell joins the cgroups first, so everything the daemon forks
	// (containerd's shims, the pods) is found there by "down".
	script := `for h in ` + strings.Join(cgroupHierarchies, " ") + `; do echo $$ > /sys/fs/cgroup/$h/` + c.Name + `/daemons/cgroup.procs; done; exec "$@"`
	argv := append([]string{"-c", script, "sh", "nsenter", "--net=" + c.netnsPath(), "--mount=" + c.mntnsPath(), "--", bin}, args...)
	cmd := exec.Command("/bin/sh", argv...)
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.Dir = c.Dir
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	cmd.Env = append(os.Environ(), "PATH="+c.KubeBin+":"+os.Getenv("PATH"))
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start %s: %w", name, err)
	}
	pid := cmd.Process.Pid
	_ = cmd.Process.Release()
	return os.WriteFile(c.path("pids", name+".pid"), []byte(strconv.Itoa(pid)+"\n"), 0o644)
}

func (c *cluster) startAPIServer(ctx context.Context) error {
	if err := c.start("etcd", c.Etcd,
		"--data-dir="+c.path("etcd"),
		"--listen-client-urls=http://127.0.0.1:2379", "--advertise-client-urls=http://127.0.0.1:2379",
		"--listen-peer-urls=http://127.0.0.1:2380", "--initial-advertise-peer-urls=http://127.0.0.1:2380",
		"--initial-cluster=default=http://127.0.0.1:2380", "--name=default",
		"--unsafe-no-fsync", "--log-level=warn"); err != nil {
		return err
	}
	pki := c.path("pki")
	if err := c.start("kube-apiserver", filepath.Join(c.KubeBin, "kube-apiserver"),
		"--etcd-servers=http://127.0.0.1:2379",
		"--advertise-address="+c.NodeIP, "--bind-address=0.0.0.0", "--secure-port=6443",
		"--service-cluster-ip-range="+c.ServiceCIDR,
		"--client-ca-file="+pki+"/ca.crt",
		"--tls-cert-file="+pki+"/apiserver.crt", "--tls-private-key-file="+pki+"/apiserver.key",
		"--kubelet-client-certificate="+pki+"/apiserver-kubelet-client.crt",
		"--kubelet-client-key="+pki+"/apiserver-kubelet-client.key",
		"--kubelet-preferred-address-types=InternalIP",
		"--service-account-issuer=https://kubernetes.default.svc.cluster.local",
		"--service-account-key-file="+pki+"/sa.pub", "--service-account-signing-key-file="+pki+"/sa.key",
		"--authorization-mode=Node,RBAC", "--enable-admission-plugins=NodeRestriction",
		"--allow-privileged=true", "--cert-dir="+pki, "--profiling=false"); err != nil {
		return err
	}
	client, err := c.adminClient()
	if err != nil {
		return err
	}
	if err := waitFor(ctx, "kube-apiserver /readyz", 3*time.Minute, c.path("logs", "kube-apiserver.log"), func() error {
		return httpOK(ctx, client, c.server()+"/readyz")
	}); err != nil {
		return err
	}
	return c.kubectlRun(ctx, "apply", "--server-side", "-f", c.path("rbac.yaml"))
}

func (c *cluster) startControllers(ctx context.Context) error {
	pki := c.path("pki")
	if err := c.start("kube-controller-manager", filepath.Join(c.KubeBin, "kube-controller-manager"),
		"--kubeconfig="+c.path("kube-controller-manager.kubeconfig"),
		"--authentication-kubeconfig="+c.path("kube-controller-manager.kubeconfig"),
		"--authorization-kubeconfig="+c.path("kube-controller-manager.kubeconfig"),
		"--service-account-private-key-file="+pki+"/sa.key", "--root-ca-file="+pki+"/ca.crt",
		"--use-service-account-credentials=true", "--leader-elect=false",
		"--bind-address=127.0.0.1", "--cluster-name="+c.Name,
		"--controllers=*,-bootstrapsigner,-tokencleaner,-cloud-node-lifecycle-controller,-service-lb-controller,-node-route-controller"); err != nil {
		return err
	}
	return c.start("kube-scheduler", filepath.Join(c.KubeBin, "kube-scheduler"),
		"--kubeconfig="+c.path("kube-scheduler.kubeconfig"),
		"--authentication-kubeconfig="+c.path("kube-scheduler.kubeconfig"),
		"--authorization-kubeconfig="+c.path("kube-scheduler.kubeconfig"),
		"--leader-elect=false", "--bind-address=127.0.0.1")
}

func (c *cluster) containerdSocket() string { return c.path("containerd", "containerd.sock") }

func (c *cluster) startContainerd(ctx context.Context) error {
	if err := c.start("containerd", c.Containerd, "--config="+c.path("containerd", "config.toml")); err != nil {
		return err
	}
	return waitFor(ctx, "containerd", time.Minute, c.path("logs", "containerd.log"), func() error {
		return runCmd(ctx, "ctr", "--address", c.containerdSocket(), "version")
	})
}

func (c *cluster) startKubelet(ctx context.Context) error {
	if err := c.start("kubelet", filepath.Join(c.KubeBin, "kubelet"),
		"--config="+c.path("kubelet-config.yaml"),
		"--kubeconfig="+c.path("kubelet.kubeconfig"),
		"--root-dir="+c.path("kubelet"),
		"--cert-dir="+c.path("pki"),
		"--node-ip="+c.NodeIP, "--hostname-override="+c.NodeName); err != nil {
		return err
	}
	return waitFor(ctx, "node "+c.NodeName+" Ready", 3*time.Minute, c.path("logs", "kubelet.log"), func() error {
		out, err := c.kubectlOutput(ctx, "get", "node", c.NodeName, "-o", `jsonpath={.status.conditions[?(@.type=="Ready")].status}`)
		if err != nil {
			return err
		}
		if out != "True" {
			return fmt.Errorf("Ready=%q", out)
		}
		return nil
	})
}

func (c *cluster) startNetworking(ctx context.Context) error {
	if err := c.start("kube-proxy", filepath.Join(c.KubeBin, "kube-proxy"), "--config="+c.path("kube-proxy-config.yaml")); err != nil {
		return err
	}
	if err := c.start("coredns", c.CoreDNS, "-conf", c.path("Corefile")); err != nil {
		return err
	}
	client, err := c.adminClient()
	if err != nil {
		return err
	}
	// The kubernetes Service answers on its ClusterIP only once kube-proxy
	// programmed the node (the host routes the Service range to the node).
	if err := waitFor(ctx, "kubernetes Service at "+c.APIServiceIP, 2*time.Minute, c.path("logs", "kube-proxy.log"), func() error {
		return httpOK(ctx, client, "https://"+c.APIServiceIP+"/readyz")
	}); err != nil {
		return err
	}
	resolver := &net.Resolver{PreferGo: true, Dial: func(ctx context.Context, network, _ string) (net.Conn, error) {
		var d net.Dialer
		return d.DialContext(ctx, network, net.JoinHostPort(c.NodeIP, "53"))
	}}
	return waitFor(ctx, "cluster DNS (kubernetes.default.svc.cluster.local)", 2*time.Minute, c.path("logs", "coredns.log"), func() error {
		addrs, err := resolver.LookupHost(ctx, "kubernetes.default.svc.cluster.local")
		if err != nil {
			return err
		}
		if !slices.Contains(addrs, c.APIServiceIP) {
			return fmt.Errorf("resolved to %v, want %s", addrs, c.APIServiceIP)
		}
		return nil
	})
}

type watchKey struct{}

// healthy reports whether a cluster of this name answers and its node is Ready.
func (c *cluster) healthy(ctx context.Context) bool {
	if _, err := os.Stat(c.kubeconfig()); err != nil {
		return false
	}
	for _, d := range daemons {
		if !c.alive(d) {
			return false
		}
	}
	out, err := c.kubectlOutput(ctx, "get", "node", c.NodeName, "-o", `jsonpath={.status.conditions[?(@.type=="Ready")].status}`)
	return err == nil && out == "True"
}

func (c *cluster) pid(name string) int {
	b, err := os.ReadFile(c.path("pids", name+".pid"))
	if err != nil {
		return 0
	}
	pid, _ := strconv.Atoi(strings.TrimSpace(string(b)))
	return pid
}

// alive reports whether the daemon runs. A zombie does not count: a daemon
// that died while "up" waited is this process's unreaped child.
func (c *cluster) alive(name string) bool {
	pid := c.pid(name)
	if pid <= 0 {
		return false
	}
	stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	// The state follows the parenthesised command name: "pid (comm) S ...".
	i := strings.LastIndexByte(string(stat), ')')
	return i >= 0 && i+2 < len(stat) && stat[i+2] != 'Z'
}

func (c *cluster) status(ctx context.Context) error {
	for _, d := range daemons {
		state := "stopped"
		if c.alive(d) {
			state = fmt.Sprintf("running (pid %d)", c.pid(d))
		}
		fmt.Printf("%-24s %s\n", d, state)
	}
	if c.healthy(ctx) {
		fmt.Printf("node %s Ready; export KUBECONFIG=%s\n", c.NodeName, c.kubeconfig())
	}
	return nil
}

// load imports image tarballs (docker-archive or OCI) into the node's
// containerd, where the kubelet finds them (pods use IfNotPresent).
func (c *cluster) load(ctx context.Context, tarballs []string) error {
	if len(tarballs) == 0 {
		return errors.New("load: no image tarballs given")
	}
	for _, t := range tarballs {
		progress("importing %s", t)
		if err := runCmd(ctx, "ctr", "--address", c.containerdSocket(), "--namespace", "k8s.io", "images", "import", t); err != nil {
			return fmt.Errorf("import %s: %w", t, err)
		}
	}
	return nil
}

// exec runs a command in the node's network and mount namespaces.
func (c *cluster) exec(ctx context.Context, args []string) error {
	if len(args) == 0 {
		return errors.New("exec: no command given")
	}
	cmd := exec.CommandContext(ctx, "nsenter", append([]string{"--net=" + c.netnsPath(), "--mount=" + c.mntnsPath(), "--"}, args...)...)
	cmd.Stdin, cmd.Stdout, cmd.Stderr = os.Stdin, os.Stdout, os.Stderr
	return cmd.Run()
}

// down stops every process of the cluster (daemons, shims and pods are all in
// its cgroup), then removes namespaces, routes, cgroups and the state
// directory. It is safe to run on a half-started or already removed cluster.
func (c *cluster) down() error {
	progress("stopping cluster %q", c.Name)
	// The kubelet first, so it does not restart what is being stopped.
	for _, d := range slices.Backward(daemons) {
		if pid := c.pid(d); pid > 0 {
			_ = syscall.Kill(pid, syscall.SIGTERM)
		}
	}
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) && c.anyAlive() {
		time.Sleep(200 * time.Millisecond)
	}
	var errs []error
	root := filepath.Join("/sys/fs/cgroup/pids", c.Name)
	for range 50 {
		pids := cgroupPids(root)
		if len(pids) == 0 {
			break
		}
		for _, p := range pids {
			_ = syscall.Kill(p, syscall.SIGKILL)
		}
		time.Sleep(100 * time.Millisecond)
	}
	if pids := cgroupPids(root); len(pids) > 0 {
		errs = append(errs, fmt.Errorf("processes %v in cgroup %s would not die", pids, root))
	}
	for _, h := range cgroupHierarchies {
		if err := removeCgroup(filepath.Join("/sys/fs/cgroup", h, c.Name)); err != nil {
			errs = append(errs, err)
		}
	}
	// With no process left in it, the mount namespace (and every mount the
	// kubelet and containerd made) goes away with its last reference.
	for _, m := range []string{c.mntnsPath(), c.path("ns")} {
		if isMountPoint(m) {
			if err := syscall.Unmount(m, syscall.MNT_DETACH); err != nil {
				errs = append(errs, fmt.Errorf("unmount %s: %w", m, err))
			}
		}
	}
	ctx := context.Background()
	_ = runCmd(ctx, "ip", "route", "del", c.ClusterCIDR)
	_ = runCmd(ctx, "ip", "route", "del", c.ServiceCIDR)
	_ = runCmd(ctx, "ip", "link", "del", c.hostVeth())
	if _, err := os.Stat(c.netnsPath()); err == nil {
		if err := runCmd(ctx, "ip", "netns", "del", c.Name); err != nil {
			errs = append(errs, err)
		}
	}
	if len(errs) == 0 {
		if mounts := mountsUnder(c.Dir); len(mounts) > 0 {
			errs = append(errs, fmt.Errorf("still mounted under %s: %v", c.Dir, mounts))
		} else if err := os.RemoveAll(c.Dir); err != nil {
			errs = append(errs, fmt.Errorf("remove %s: %w", c.Dir, err))
		}
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("down: %w", err)
	}
	progress("cluster %q removed", c.Name)
	return nil
}

func (c *cluster) anyAlive() bool {
	return slices.ContainsFunc(daemons, c.alive)
}

// cgroupPids lists every process in a cgroup tree.
func cgroupPids(root string) []int {
	var pids []int
	// A cgroup that vanishes mid-walk (its last process exited) is skipped.
	_ = filepath.WalkDir(root, func(path string, d os.DirEntry, walkErr error) error {
		if walkErr != nil || !d.IsDir() {
			return nil //nolint:nilerr // see above
		}
		b, readErr := os.ReadFile(filepath.Join(path, "cgroup.procs"))
		if readErr != nil {
			return nil //nolint:nilerr // see above
		}
		for _, f := range strings.Fields(string(b)) {
			if p, err := strconv.Atoi(f); err == nil {
				pids = append(pids, p)
			}
		}
		return nil
	})
	return pids
}

// removeCgroup removes a cgroup tree, children first.
func removeCgroup(root string) error {
	var dirs []string
	_ = filepath.WalkDir(root, func(path string, d os.DirEntry, err error) error {
		if err == nil && d.IsDir() {
			dirs = append(dirs, path)
		}
		return nil
	})
	for _, d := range slices.Backward(dirs) {
		if err := os.Remove(d); err != nil && !os.IsNotExist(err) {
			return fmt.Errorf("remove cgroup %s: %w", d, err)
		}
	}
	return nil
}

// mountsUnder lists this mount namespace's mount points below dir.
func mountsUnder(dir string) []string {
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return nil
	}
	defer f.Close()
	var out []string
	s := bufio.NewScanner(f)
	for s.Scan() {
		fields := strings.Fields(s.Text())
		if len(fields) > 4 && (fields[4] == dir || strings.HasPrefix(fields[4], dir+"/")) {
			out = append(out, fields[4])
		}
	}
	return out
}

func isMountPoint(path string) bool { return slices.Contains(mountsUnder(path), path) }

func (c *cluster) adminClient() (*http.Client, error) {
	pki := c.path("pki")
	cert, err := tls.LoadX509KeyPair(pki+"/admin.crt", pki+"/admin.key")
	if err != nil {
		return nil, fmt.Errorf("admin certificate: %w", err)
	}
	ca, err := os.ReadFile(pki + "/ca.crt")
	if err != nil {
		return nil, err
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(ca)
	return &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{
		TLSClientConfig: &tls.Config{Certificates: []tls.Certificate{cert}, RootCAs: pool, MinVersion: tls.VersionTLS12},
	}}, nil
}

func httpOK(ctx context.Context, client *http.Client, url string) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return err
	}
	resp, err := client.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("%s: %s: %s", url, resp.Status, strings.TrimSpace(string(body)))
	}
	return nil
}

// waitFor polls check every second until it succeeds, reporting progress
// every 15 s; on timeout it shows the end of the relevant log.
func waitFor(ctx context.Context, what string, timeout time.Duration, logFile string, check func() error) error {
	start := time.Now()
	lastReport := start
	for {
		err := check()
		if err == nil {
			return nil
		}
		if died, ok := ctx.Value(watchKey{}).(func() string); ok {
			if name := died(); name != "" {
				return fmt.Errorf("%s exited while waiting for %s\n--- last lines of its log ---\n%s", name, what, tail(filepath.Join(filepath.Dir(logFile), name+".log"), 25))
			}
		}
		if time.Since(start) > timeout {
			return fmt.Errorf("waiting for %s timed out after %s: %w\n--- last lines of %s ---\n%s", what, timeout, err, logFile, tail(logFile, 25))
		}
		if time.Since(lastReport) >= 15*time.Second {
			progress("  still waiting for %s (%s): %v", what, time.Since(start).Round(time.Second), err)
			lastReport = time.Now()
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(time.Second):
		}
	}
}

func tail(path string, n int) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return err.Error()
	}
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	return strings.Join(lines[max(0, len(lines)-n):], "\n")
}

func runCmd(ctx context.Context, args ...string) error {
	out, err := exec.CommandContext(ctx, args[0], args[1:]...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("%s: %w: %s", strings.Join(args, " "), err, strings.TrimSpace(string(out)))
	}
	return nil
}

func (c *cluster) kubectlRun(ctx context.Context, args ...string) error {
	return runCmd(ctx, append([]string{c.kubectl(), "--kubeconfig", c.kubeconfig()}, args...)...)
}

func (c *cluster) kubectlOutput(ctx context.Context, args ...string) (string, error) {
	cmd := exec.CommandContext(ctx, c.kubectl(), append([]string{"--kubeconfig", c.kubeconfig(), "--request-timeout=5s"}, args...)...)
	out, err := cmd.Output()
	if err != nil {
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			return "", fmt.Errorf("kubectl %s: %w: %s", strings.Join(args, " "), err, strings.TrimSpace(string(ee.Stderr)))
		}
		return "", err
	}
	return strings.TrimSpace(string(out)), nil
}
