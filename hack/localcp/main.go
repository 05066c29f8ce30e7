// Command localcp runs a local Kubernetes control plane (a real etcd and
// kube-apiserver through envtest) with the Stevedore CRDs installed, writes an
// admin kubeconfig and runs until SIGINT/SIGTERM. hack/run-local.sh uses it.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"

	"sigs.k8s.io/controller-runtime/pkg/envtest"
)

func main() {
	if err := run(); err != nil {
		_, _ = fmt.Fprintf(os.Stderr, "localcp: %v\n", err)
		os.Exit(1)
	}
}

func run() error {
	kubeconfig := flag.String("write-kubeconfig", "bin/local/kubeconfig", "Where to write the admin kubeconfig.")
	crds := flag.String("crds", "config/crd/bases", "Directory of CRD manifests to install.")
	flag.Parse()
	if os.Getenv("KUBEBUILDER_ASSETS") == "" {
		return fmt.Errorf("KUBEBUILDER_ASSETS is not set: run eval \"$(hack/testbin.sh kube etcd)\" first")
	}
	env := &envtest.Environment{CRDDirectoryPaths: []string{*crds}, ErrorIfCRDPathMissing: true}
	defer func() { _ = env.Stop() }() // also after a failed Start, which may leave processes behind
	if _, err := env.Start(); err != nil {
		return fmt.Errorf("start control plane: %w", err)
	}
	user, err := env.AddUser(envtest.User{Name: "admin", Groups: []string{"system:masters"}}, nil)
	if err != nil {
		return fmt.Errorf("add admin user: %w", err)
	}
	kc, err := user.KubeConfig()
	if err != nil {
		return fmt.Errorf("render kubeconfig: %w", err)
	}
	if err := os.MkdirAll(filepath.Dir(*kubeconfig), 0o755); err != nil {
		return err
	}
	tmp := *kubeconfig + ".tmp"
	if err := os.WriteFile(tmp, kc, 0o600); err != nil {
		return fmt.Errorf("write kubeconfig: %w", err)
	}
	if err := os.Rename(tmp, *kubeconfig); err != nil {
		return fmt.Errorf("write kubeconfig: %w", err)
	}
	fmt.Printf("control plane up at %s; kubeconfig %s\n", env.Config.Host, *kubeconfig)
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	<-ctx.Done()
	_ = os.Remove(*kubeconfig)
	return nil
}
