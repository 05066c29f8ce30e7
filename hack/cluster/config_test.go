package main

import (
	"context"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"k8s.io/client-go/tools/clientcmd"
	"sigs.k8s.io/yaml"
)

// TestWriteConfig renders the whole state directory (no root needed) and
// checks what the daemons would read: kubeconfigs that load, certificates
// the CA verifies with the identities RBAC expects, and configuration that
// keeps the node off the machine's settings.
func TestWriteConfig(t *testing.T) {
	c := defaultCluster()
	c.Dir = t.TempDir()
	if err := c.writeConfig(context.Background()); err != nil {
		t.Fatal(err)
	}

	roots := x509.NewCertPool()
	roots.AddCert(readCert(t, c.path("pki", "ca.crt")))
	certs := []struct {
		name, cn string
		orgs     []string
		usage    x509.ExtKeyUsage
		ips      []string
	}{
		{"apiserver", "kube-apiserver", nil, x509.ExtKeyUsageServerAuth, []string{c.NodeIP, c.APIServiceIP, "127.0.0.1"}},
		{"admin", "stevedore-admin", []string{"system:masters"}, x509.ExtKeyUsageClientAuth, nil},
		{"kubelet", "system:node:stevedore", []string{"system:nodes"}, x509.ExtKeyUsageServerAuth, []string{c.NodeIP}},
		{"kubelet", "system:node:stevedore", []string{"system:nodes"}, x509.ExtKeyUsageClientAuth, nil},
		{"kube-proxy", "system:kube-proxy", nil, x509.ExtKeyUsageClientAuth, nil},
		{"kube-controller-manager", "system:kube-controller-manager", nil, x509.ExtKeyUsageClientAuth, nil},
		{"coredns", "stevedore-cluster:coredns", nil, x509.ExtKeyUsageClientAuth, nil},
	}
	for _, cc := range certs {
		cert := readCert(t, c.path("pki", cc.name+".crt"))
		if _, err := cert.Verify(x509.VerifyOptions{Roots: roots, KeyUsages: []x509.ExtKeyUsage{cc.usage}}); err != nil {
			t.Errorf("%s: does not verify for %v: %v", cc.name, cc.usage, err)
		}
		if cert.Subject.CommonName != cc.cn || !slices.Equal(cert.Subject.Organization, cc.orgs) {
			t.Errorf("%s: subject CN=%q O=%v, want CN=%q O=%v", cc.name, cert.Subject.CommonName, cert.Subject.Organization, cc.cn, cc.orgs)
		}
		for _, ip := range cc.ips {
			if !slices.ContainsFunc(cert.IPAddresses, func(a net.IP) bool { return a.Equal(net.ParseIP(ip)) }) {
				t.Errorf("%s: no IP SAN %s in %v", cc.name, ip, cert.IPAddresses)
			}
		}
	}

	for _, kc := range []string{"admin", "kubelet", "kube-proxy", "kube-controller-manager", "kube-scheduler", "coredns"} {
		cfg, err := clientcmd.BuildConfigFromFlags("", c.path(kc+".kubeconfig"))
		if err != nil {
			t.Errorf("%s kubeconfig: %v", kc, err)
			continue
		}
		if cfg.Host != "https://10.251.0.2:6443" {
			t.Errorf("%s kubeconfig: server %q", kc, cfg.Host)
		}
		if _, err := os.Stat(cfg.CertFile); err != nil {
			t.Errorf("%s kubeconfig: client certificate: %v", kc, err)
		}
	}

	var kubelet map[string]any
	readYAML(t, c.path("kubelet-config.yaml"), &kubelet)
	for key, want := range map[string]any{
		"protectKernelDefaults": true, "cgroupRoot": "/stevedore", "cgroupDriver": "cgroupfs",
		"address": c.NodeIP, "imageGCHighThresholdPercent": float64(100), "oomScoreAdj": float64(0),
		"containerRuntimeEndpoint": "unix://" + c.path("containerd", "containerd.sock"),
	} {
		if kubelet[key] != want {
			t.Errorf("kubelet config %s = %v, want %v", key, kubelet[key], want)
		}
	}
	var proxy map[string]any
	readYAML(t, c.path("kube-proxy-config.yaml"), &proxy)
	if ct := proxy["conntrack"].(map[string]any); ct["maxPerCore"] != float64(0) || ct["min"] != float64(0) {
		t.Errorf("kube-proxy would size the global conntrack table: %v", ct)
	}

	var cni struct {
		Plugins []struct {
			Type string `json:"type"`
			IPAM struct {
				DataDir string `json:"dataDir"`
				Ranges  [][]struct {
					Subnet string `json:"subnet"`
				} `json:"ranges"`
			} `json:"ipam"`
		} `json:"plugins"`
	}
	b, err := os.ReadFile(c.path("cni", "net.d", "10-stevedore.conflist"))
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(b, &cni); err != nil {
		t.Fatalf("CNI config is not JSON: %v", err)
	}
	if cni.Plugins[0].Type != "bridge" || cni.Plugins[0].IPAM.Ranges[0][0].Subnet != c.PodCIDR || !strings.HasPrefix(cni.Plugins[0].IPAM.DataDir, c.Dir) {
		t.Errorf("CNI bridge config: %+v", cni.Plugins[0])
	}

	toml, err := os.ReadFile(c.path("containerd", "config.toml"))
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"restrict_oom_score_adj = true", "netns_mounts_under_state_dir = true", `sandbox_image = "` + c.PauseImage + `"`, `root = "` + c.Dir + `/containerd/root"`} {
		if !strings.Contains(string(toml), want) {
			t.Errorf("containerd config lacks %q", want)
		}
	}

	for name, want := range kubeletSysctls {
		got, err := os.ReadFile(c.path("sysctl", strings.ReplaceAll(name, "/", ".")))
		if err != nil || strings.TrimSpace(string(got)) != want {
			t.Errorf("sysctl shadow %s = %q (%v), want %q", name, got, err, want)
		}
	}
}

func readCert(t *testing.T, path string) *x509.Certificate {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	blk, _ := pem.Decode(b)
	if blk == nil {
		t.Fatalf("%s: no PEM block", path)
	}
	cert, err := x509.ParseCertificate(blk.Bytes)
	if err != nil {
		t.Fatalf("%s: %v", filepath.Base(path), err)
	}
	return cert
}

func readYAML(t *testing.T, path string, into any) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := yaml.Unmarshal(b, into); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
}

func TestPreflightNamesWhatIsMissing(t *testing.T) {
	c := defaultCluster()
	c.Dir = t.TempDir()
	c.CNIBinDir = t.TempDir()
	err := c.preflight()
	if err == nil {
		t.Fatal("preflight passed without any binaries")
	}
	for _, want := range []string{"STEVEDORE_KUBE_BIN is not set", "STEVEDORE_COREDNS is not set", "CNI plugin bridge missing"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("preflight error lacks %q:\n%v", want, err)
		}
	}
}
