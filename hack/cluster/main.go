// Command cluster runs a single-node Kubernetes cluster on this machine from
// real components — etcd, kube-apiserver, kube-controller-manager,
// kube-scheduler, kubelet, kube-proxy, CoreDNS, containerd, runc and the CNI
// bridge plugin — for Stevedore's demo and end-to-end tests, on machines
// without Docker or a cluster.
//
//	cluster up      [flags]          start the cluster (idempotent), print the kubeconfig
//	cluster down    [flags]          stop everything and remove the state directory
//	cluster load    [flags] TAR...   import image tarballs into the node's containerd
//	cluster status  [flags]          show what runs
//	cluster exec    [flags] -- CMD   run CMD inside the node's namespaces
//
// The node runs in a network namespace of its own, joined to the host by one
// veth pair (host 10.251.0.1, node 10.251.0.2) and with host routes to the pod
// and Service networks, so tests on the host reach pods and Service IPs while
// no traffic leaves the machine. Its daemons share a private mount namespace,
// which keeps kubelet's volume mounts off the host and shows kubelet the kernel
// settings it insists on without changing the machine's. Pods live under the
// cgroup /<name>. All files live under -dir.
//
// Binaries come from the environment hack/testbin.sh prints:
// STEVEDORE_KUBE_BIN (a directory with kube-apiserver, kube-controller-manager,
// kube-scheduler, kubelet, kube-proxy and kubectl), STEVEDORE_ETCD and
// STEVEDORE_COREDNS; containerd, runc and the CNI plugins are Debian's.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"syscall"
)

func main() {
	if err := run(os.Args[1:]); err != nil {
		fmt.Fprintf(os.Stderr, "cluster: %v\n", err)
		os.Exit(1)
	}
}

func usage() error {
	return errors.New("usage: cluster up|down|load|status|exec [flags] [args]")
}

func run(args []string) error {
	if len(args) == 0 {
		return usage()
	}
	cmd, args := args[0], args[1:]
	fs := flag.NewFlagSet("cluster "+cmd, flag.ContinueOnError)
	c := defaultCluster()
	fs.StringVar(&c.Dir, "dir", envOr("STEVEDORE_CLUSTER_DIR", "/var/lib/stevedore-cluster"), "State directory: certificates, configs, logs, containerd and kubelet data.")
	fs.StringVar(&c.Name, "name", c.Name, "Name of the network namespace, the veth pair prefix and the pods' cgroup.")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if err := c.resolvePaths(); err != nil {
		return err
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	switch cmd {
	case "up":
		return c.up(ctx)
	case "down":
		return c.down()
	case "load":
		return c.load(ctx, fs.Args())
	case "status":
		return c.status(ctx)
	case "exec":
		return c.exec(ctx, fs.Args())
	default:
		return usage()
	}
}

func envOr(key, def string) string {
	if v := os.Getenv(key); v != "" {
		return v
	}
	return def
}
