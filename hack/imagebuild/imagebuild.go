// Command imagebuild builds Stevedore's container images as image tarballs,
// with no Docker engine and no registry (go-containerregistry), for machines
// that cannot run `docker build`. The Dockerfile at the repository root builds
// the same manager and agent images for users who have Docker.
//
//	go run ./hack/imagebuild [-version V] [-registry R] [-out bin/images] [-only agent,manager,...]
//	                         [-format docker|oci] [-platforms linux/amd64,linux/arm64]
//	                         [-prometheus PATH] [-minio PATH] [-thanos PATH]
//	                         [-busybox PATH] [-local-path-provisioner PATH]
//	                         [-olm PATH] [-opm PATH] [-bundle DIR] [-catalog DIR -catalog-cache DIR]
//
// It writes one tarball per image to -out, named after the image:
//
//	stevedore-manager.tar  ghcr.io/stevedore-dev/stevedore-manager:<version>
//	stevedore-agent.tar    ghcr.io/stevedore-dev/stevedore-agent:<version>
//	stevedore-pause.tar    docker.io/library/stevedore-pause:v1
//	stevedore-test-<peer>.tar
//	                       docker.io/library/stevedore-test-<peer>:<version of the binary>
//	                       plus the upstream reference of that release (below)
//
// The manager and agent carry the release references (-registry, default
// ghcr.io/stevedore-dev, is also linked into both binaries as
// internal/version.Registry), so the manager's default --agent-image
// <registry>/stevedore-agent:<version> names exactly the imported agent image.
//
// Why upstream references: the local cluster's node (hack/cluster) reaches no
// registry, so every image a pod names must already be in its containerd,
// preloaded the way `kind load docker-image` does. The test peers are the real
// programs of those releases, built from their Go modules or taken from
// Debian, so each tarball also lists, as extra RepoTags of the same image, the
// reference that the samples (config/samples) and the operator's defaults use:
//
//	prometheus              quay.io/prometheus/prometheus:v3.15.0 (the module v0.315.0 is Prometheus 3.15.0;
//	                        hack/testbin.sh leaves out the service-discovery plugins)
//	minio                   quay.io/minio/minio:RELEASE.<time of the pinned commit>
//	busybox                 docker.io/library/busybox:<Debian's busybox-static version>
//	local-path-provisioner  docker.io/rancher/local-path-provisioner:<module version>
//
// `kubectl apply -f config/samples/` then works unchanged on that node with
// imagePullPolicy IfNotPresent (the default for tags other than latest).
//
// For installing the OLM bundle on that node (test/e2e/olm_test.go) there
// are four more images, described in olm.go: stevedore-test-olm (OLM's
// olm, catalog, package-server, copy-content and cpb, plus busybox's cp),
// stevedore-test-opm (opm and grpc_health_probe), the bundle image (-bundle
// DIR: scratch with DIR/manifests, DIR/metadata and the labels of
// DIR/metadata/annotations.yaml) and a file-based catalog image (-catalog
// DIR: the opm image serving DIR as /configs).
//
// The manager and agent binaries (and the pause program in ./pause) are built
// here with CGO_ENABLED=0 go build -trimpath; the test peers are the static
// binaries that hack/testbin.sh provisions (-prometheus etc. default to
// $STEVEDORE_PROMETHEUS, $STEVEDORE_MINIO, $STEVEDORE_THANOS,
// $STEVEDORE_BUSYBOX, $STEVEDORE_LOCAL_PATH_PROVISIONER) and are tagged with
// the version in their cache directory name (prometheus-v0.315.0), busybox
// with the version the binary prints.
//
// Images are linux/amd64 on a distroless-style base built from scratch (users
// root, nobody and nonroot 65532, /tmp 1777, the host's CA bundle) and run as
// 65532:65532, except busybox, which runs as root like the upstream image
// (the provisioner's helper pods create volume directories on the node).
// Short references (NAME:TAG) are normalised by containerd and Docker to
// docker.io/library/NAME:TAG, which is what the pause and test images use.
// Each tarball is in the docker-archive format (manifest.json with RepoTags),
// which `docker load -i` and `ctr -n k8s.io images import` both accept; ctr
// creates one image per RepoTag.
//
// Release archives (-format oci, make release-images): with
//
//	-format oci -platforms linux/amd64,linux/arm64 -only manager,agent
//
// it builds each binary once per platform (GOOS/GOARCH, CGO_ENABLED=0, the
// same -ldflags), assembles one image per platform on the same base layer
// (it holds no binaries) with the config's os and architecture set, and
// writes one OCI image layout tarball ("oci-archive") per image,
// <repo>-<tag>.oci.tar: oci-layout, index.json and blobs/sha256/. index.json
// points to an image index (application/vnd.oci.image.index.v1+json) that
// lists every platform's manifest with its platform; its entry carries
// org.opencontainers.image.ref.name=<tag> and io.containerd.image.name=<full
// reference>, which `ctr images import`, `docker load` (Docker 25 or later)
// and `skopeo copy oci-archive:FILE docker://...` go by (with --all, skopeo
// copies the whole index, not only the host's platform).
// The pause image can be cross-built too; the test peers are made from
// host-provided linux/amd64 binaries, so they refuse other platforms. The
// default stays -format docker -platforms linux/amd64, which the local
// cluster imports; -format docker holds one platform.
//
// Builds are reproducible: every timestamp is $SOURCE_DATE_EPOCH (default 0).
// Each tarball is written to a temporary file and renamed into place. The
// images' primary references and files are printed on stdout, one "REF FILE"
// line per image; progress goes to stderr.
package main

import (
	"archive/tar"
	"bufio"
	"bytes"
	"context"
	"debug/elf"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/google/go-containerregistry/pkg/v1/types"

	"github.com/stevedore-dev/stevedore/internal/version"
)

const (
	modulePath     = "github.com/stevedore-dev/stevedore"
	versionVar     = modulePath + "/internal/version.Version"
	registryVar    = modulePath + "/internal/version.Registry"
	defaultSource  = "https://github.com/stevedore-dev/stevedore"
	defaultRepo    = "docker.io/library"
	defaultCA      = "/etc/ssl/certs/ca-certificates.crt"
	pauseTag       = "v1"
	defaultPath    = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
	sslCertFileEnv = "SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt"
)

// options configure one run.
type options struct {
	Root         string            // module root; found with `go env GOMOD` when empty
	Out          string            // output directory
	Version      string            // version of manager and agent (label, tag, -ldflags)
	Revision     string            // optional VCS revision label
	Source       string            // org.opencontainers.image.source of our images
	Registry     string            // registry prefix of the manager and agent references
	Repo         string            // repository prefix of the pause and test peer references
	CABundle     string            // host CA bundle copied into the base layer
	Only         []string          // image keys to build; empty: every available one
	Peers        map[string]string // test peer key -> host binary
	Created      time.Time         // every timestamp in the images
	Log          io.Writer         // progress
	GoCommand    string            // the go tool; "go" when empty
	Platforms    []string          // os/arch targets (-platforms); linux/amd64 when empty
	Format       string            // formatDocker (when empty) or formatOCI
	BundleDir    string            // OLM bundle directory for the bundle image (-bundle); none when empty
	CatalogDir   string            // file-based catalog directory for the catalog image (-catalog); none when empty
	CatalogCache string            // opm's cache of CatalogDir (-catalog-cache)
}

// result is one written image.
type result struct {
	Key     string
	Ref     name.Tag
	Aliases []name.Tag // further RepoTags of the same image
	File    string
}

// imageSpec describes one image: a binary on the base layer plus extras.
type imageSpec struct {
	key         string // selection key: agent, manager, pause, prometheus, ...
	repo        string // repository name, e.g. stevedore-agent
	tag         string
	title       string
	description string
	source      string
	version     string // label value
	registry    string // reference prefix; opts.Repo when empty
	aliases     []string
	user        string // "uid:gid"; nonroot when empty

	pkg     string // Go package to build (relative to the module root), or
	hostBin string // a prebuilt static binary
	ldflags string
	binPath string // path of the binary in the image
	extra   func(*layerBuilder)
	config  v1.Config // entrypoint, cmd, workdir, ports; user/env/labels are filled in

	files   map[string]string // more static binaries: path in the image -> host path
	scratch bool              // no base layer, user or environment (the OLM bundle image)
	labels  map[string]string // more config labels
}

// peerDef is an image for a test peer built from a binary hack/testbin.sh provisions.
type peerDef struct {
	key, env, binPath, source, description string
	config                                 v1.Config
	extra                                  func(*layerBuilder)
	user                                   string
	// tag derives the image tag from the binary; peerTag (the cache
	// directory's version) when nil.
	tag func(bin string) (string, error)
	// upstream is the upstream release reference the image also carries,
	// given its tag; none when it returns "".
	upstream func(tag string) string
	// files are further static binaries of the image (path in the image ->
	// host path), given the main one; none when nil.
	files func(bin string) (map[string]string, error)
}

const prometheusYAML = `# Default configuration of the stevedore-test-prometheus image: scrape itself.
global:
  scrape_interval: 15s
scrape_configs:
  - job_name: prometheus
    static_configs:
      - targets: ["localhost:9090"]
`

var peerDefs = []peerDef{
	{
		key: "prometheus", env: "STEVEDORE_PROMETHEUS", binPath: "/bin/prometheus",
		source:      "https://github.com/prometheus/prometheus",
		description: "Prometheus server (Stevedore test peer)",
		config: v1.Config{
			Entrypoint:   []string{"/bin/prometheus"},
			Cmd:          []string{"--config.file=/etc/prometheus/prometheus.yml", "--storage.tsdb.path=/prometheus"},
			WorkingDir:   "/prometheus",
			ExposedPorts: ports("9090/tcp"),
			Volumes:      map[string]struct{}{"/prometheus": {}},
		},
		extra: func(l *layerBuilder) {
			l.file("/etc/prometheus/prometheus.yml", 0o644, []byte(prometheusYAML))
			l.dir("/prometheus", 0o755, nonrootUID, nonrootGID)
		},
		upstream: prometheusUpstream,
	},
	{
		key: "minio", env: "STEVEDORE_MINIO", binPath: "/usr/bin/minio",
		source:      "https://github.com/minio/minio",
		description: "MinIO object storage server (Stevedore test peer)",
		config: v1.Config{
			Entrypoint:   []string{"/usr/bin/minio"},
			Cmd:          []string{"server", "/data", "--address", ":9000", "--console-address", ":9001"},
			ExposedPorts: ports("9000/tcp", "9001/tcp"),
			Volumes:      map[string]struct{}{"/data": {}},
		},
		extra: func(l *layerBuilder) {
			l.dir("/data", 0o755, nonrootUID, nonrootGID)
		},
		upstream: minioUpstream,
	},
	{
		key: "thanos", env: "STEVEDORE_THANOS", binPath: "/bin/thanos",
		source:      "https://github.com/thanos-io/thanos",
		description: "Thanos (querier, store, compactor; Stevedore test peer)",
		config: v1.Config{
			Entrypoint:   []string{"/bin/thanos"},
			ExposedPorts: ports("10901/tcp", "10902/tcp"),
		},
	},
	{
		key: "busybox", env: "STEVEDORE_BUSYBOX", binPath: "/bin/busybox",
		source:      "https://busybox.net",
		description: "BusyBox (Debian's busybox-static; Stevedore test peer)",
		config:      v1.Config{Cmd: []string{"sh"}},
		// Like the upstream image: the local-path provisioner's helper pods
		// create and remove volume directories on the node as root.
		user:     "0:0",
		tag:      busyboxTag,
		extra:    busyboxApplets,
		upstream: func(tag string) string { return "docker.io/library/busybox:" + tag },
	},
	{
		key: "local-path-provisioner", env: "STEVEDORE_LOCAL_PATH_PROVISIONER", binPath: "/usr/bin/local-path-provisioner",
		source:      "https://github.com/rancher/local-path-provisioner",
		description: "Rancher local-path provisioner (the local cluster's StorageClass; Stevedore test peer)",
		config:      v1.Config{Entrypoint: []string{"/usr/bin/local-path-provisioner"}},
		upstream:    func(tag string) string { return "docker.io/rancher/local-path-provisioner:" + tag },
	},
	olmPeer,
	opmPeer,
}

// prometheusModuleVersion is Prometheus's Go module version, v0.MMM.P for release
// M.MM.P (v0.315.0 is 3.15.0), with the suffix -nosd when hack/testbin.sh built
// it without the service-discovery plugins (static and file configs still
// work, which is all the samples and tests use).
var prometheusModuleVersion = regexp.MustCompile(`^v0\.([1-9])([0-9]{2})\.([0-9]+)(-nosd)?$`)

func prometheusUpstream(tag string) string {
	m := prometheusModuleVersion.FindStringSubmatch(tag)
	if m == nil {
		return ""
	}
	minor, _ := strconv.Atoi(m[2])
	return fmt.Sprintf("quay.io/prometheus/prometheus:v%s.%d.%s", m[1], minor, m[3])
}

// MinIO is pinned by a pseudo-version of its release commit; the release is
// named after the commit's time: v0.0.0-20260212201848-7aac2a2c5b7c is
// RELEASE.2026-02-12T20-18-48Z.
var minioPseudoVersion = regexp.MustCompile(`^v0\.0\.0-([0-9]{4})([0-9]{2})([0-9]{2})([0-9]{2})([0-9]{2})([0-9]{2})-[0-9a-f]{12}$`)

func minioUpstream(tag string) string {
	m := minioPseudoVersion.FindStringSubmatch(tag)
	if m == nil {
		return ""
	}
	return fmt.Sprintf("quay.io/minio/minio:RELEASE.%s-%s-%sT%s-%s-%sZ", m[1], m[2], m[3], m[4], m[5], m[6])
}

var busyboxBanner = regexp.MustCompile(`BusyBox v([0-9]+\.[0-9]+\.[0-9]+)`)

// busyboxTag is the version the binary prints ("BusyBox v1.35.0 (Debian ...)").
func busyboxTag(bin string) (string, error) {
	out, _ := exec.Command(bin, "--help").CombinedOutput() // exits 0 or 1 by build
	m := busyboxBanner.FindSubmatch(out)
	if m == nil {
		return "", fmt.Errorf("%s --help: no \"BusyBox vX.Y.Z\" banner in %q", bin, firstLine(out))
	}
	return string(m[1]), nil
}

func firstLine(b []byte) string {
	s, _, _ := strings.Cut(string(b), "\n")
	return s
}

// busyboxApplets links the applets a shell script needs to /bin/busybox
// (the helper pods run "sh /script/setup", which calls mkdir, rm, chmod).
func busyboxApplets(l *layerBuilder) {
	for _, a := range []string{
		"sh", "ash", "cat", "chmod", "chown", "cp", "du", "echo", "env", "find", "grep", "id",
		"ln", "ls", "mkdir", "mv", "rm", "rmdir", "sed", "sleep", "stat", "test", "touch", "true", "false",
	} {
		l.symlink("/bin/"+a, "busybox")
	}
}

func ports(ps ...string) map[string]struct{} {
	m := map[string]struct{}{}
	for _, p := range ps {
		m[p] = struct{}{}
	}
	return m
}

func main() {
	opts := options{Peers: map[string]string{}, Log: os.Stderr}
	fs := flag.NewFlagSet("imagebuild", flag.ExitOnError)
	fs.Usage = func() {
		_, _ = fmt.Fprintf(fs.Output(), "Usage: go run ./hack/imagebuild [flags]\n\n"+
			"Builds Stevedore's images as docker-archive tarballs (or, with -format oci,\n"+
			"multi-platform OCI image layout tarballs) without a Docker engine.\n"+
			"Prints one \"REF FILE\" line per image on stdout.\n\nFlags:\n")
		fs.PrintDefaults()
	}
	fs.StringVar(&opts.Out, "out", "bin/images", "Output directory (relative to the module root unless absolute).")
	fs.StringVar(&opts.Version, "version", envOr("VERSION", "dev"), "Version of the manager and agent: -ldflags, label and image tag.")
	fs.StringVar(&opts.Revision, "revision", "", "VCS revision for the org.opencontainers.image.revision label.")
	fs.StringVar(&opts.Source, "source", defaultSource, "org.opencontainers.image.source of the Stevedore images.")
	fs.StringVar(&opts.Registry, "registry", version.Registry, "Registry of the manager and agent images (also the manager's default --agent-image registry).")
	fs.StringVar(&opts.Repo, "repo", defaultRepo, "Repository prefix of the pause and test peer image references.")
	fs.StringVar(&opts.CABundle, "ca-bundle", defaultCA, "Host CA bundle to copy into the base layer.")
	fs.StringVar(&opts.Root, "root", "", "Module root (default: found with `go env GOMOD`).")
	fs.StringVar(&opts.BundleDir, "bundle", "", "OLM bundle directory (manifests/, metadata/) to build the bundle image from, e.g. bundle.")
	fs.StringVar(&opts.CatalogDir, "catalog", "", "File-based catalog directory to build the catalog image from (needs the opm binary and -catalog-cache).")
	fs.StringVar(&opts.CatalogCache, "catalog-cache", "", "opm's cache of the -catalog directory (opm serve DIR --cache-dir=CACHE --cache-only).")
	platforms := fs.String("platforms", defaultPlatform.String(), "Comma-separated platforms of the images: "+supportedPlatformNames()+" (more than one needs -format oci; test peers are linux/amd64 only).")
	fs.StringVar(&opts.Format, "format", formatDocker, "Tarball format: docker (docker-archive <repo>.tar, one platform) or oci (OCI image layout <repo>-<tag>.oci.tar with an index of every platform).")
	only := fs.String("only", "", "Comma-separated images to build: manager,agent,pause,prometheus,minio,thanos,busybox,local-path-provisioner,olm,opm,bundle,catalog (default: manager, agent, pause and every peer whose binary is given).")
	for _, p := range peerDefs {
		fs.Func(p.key, fmt.Sprintf("Static %s binary for the stevedore-test-%s image (default $%s).", p.key, p.key, p.env), func(s string) error {
			opts.Peers[p.key] = s
			return nil
		})
	}
	_ = fs.Parse(os.Args[1:])
	if fs.NArg() > 0 {
		fs.Usage()
		os.Exit(2)
	}
	for _, p := range peerDefs {
		if _, ok := opts.Peers[p.key]; !ok && os.Getenv(p.env) != "" {
			opts.Peers[p.key] = os.Getenv(p.env)
		}
	}
	if *only != "" {
		opts.Only = strings.Split(*only, ",")
	}
	opts.Platforms = strings.Split(*platforms, ",")
	created, err := sourceDateEpoch()
	if err != nil {
		fatal(err)
	}
	opts.Created = created

	results, err := run(context.Background(), opts)
	if err != nil {
		fatal(err)
	}
	for _, r := range results {
		fmt.Printf("%s %s\n", r.Ref.String(), r.File)
	}
}

func fatal(err error) {
	_, _ = fmt.Fprintf(os.Stderr, "imagebuild: %v\n", err)
	os.Exit(1)
}

func envOr(key, def string) string {
	if v := os.Getenv(key); v != "" {
		return v
	}
	return def
}

func sourceDateEpoch() (time.Time, error) {
	s := os.Getenv("SOURCE_DATE_EPOCH")
	if s == "" {
		return time.Unix(0, 0).UTC(), nil
	}
	sec, err := strconv.ParseInt(s, 10, 64)
	if err != nil {
		return time.Time{}, fmt.Errorf("SOURCE_DATE_EPOCH=%q: %w", s, err)
	}
	return time.Unix(sec, 0).UTC(), nil
}

// run builds the selected images and writes them under opts.Out.
func run(ctx context.Context, opts options) ([]result, error) {
	if opts.Log == nil {
		opts.Log = io.Discard
	}
	if opts.GoCommand == "" {
		opts.GoCommand = "go"
	}
	if opts.Repo == "" {
		opts.Repo = defaultRepo
	}
	if opts.Registry == "" {
		opts.Registry = version.Registry
	}
	if opts.Source == "" {
		opts.Source = defaultSource
	}
	if opts.CABundle == "" {
		opts.CABundle = defaultCA
	}
	if opts.Format == "" {
		opts.Format = formatDocker
	}
	plats, err := parsePlatforms(opts.Platforms)
	if err != nil {
		return nil, err
	}
	switch opts.Format {
	case formatDocker:
		if len(plats) > 1 {
			return nil, fmt.Errorf("-format docker holds one platform per tarball, not %d: use -format oci for -platforms %s", len(plats), strings.Join(opts.Platforms, ","))
		}
	case formatOCI:
	default:
		return nil, fmt.Errorf("-format %q: want %s or %s", opts.Format, formatDocker, formatOCI)
	}
	if opts.Root == "" {
		root, err := moduleRoot(ctx, opts.GoCommand)
		if err != nil {
			return nil, err
		}
		opts.Root = root
	}
	if opts.Out == "" {
		opts.Out = "bin/images"
	}
	if !filepath.IsAbs(opts.Out) {
		opts.Out = filepath.Join(opts.Root, opts.Out)
	}
	if strings.ContainsAny(opts.Version, " \t\n'\"") || opts.Version == "" {
		return nil, fmt.Errorf("version %q: must be non-empty without spaces or quotes", opts.Version)
	}
	if st, err := os.Stat(opts.CABundle); err != nil || !st.Mode().IsRegular() || st.Size() == 0 {
		return nil, fmt.Errorf("CA bundle %s: missing or empty (install the Debian package ca-certificates or pass -ca-bundle)", opts.CABundle)
	}

	specs, err := selectSpecs(opts)
	if err != nil {
		return nil, err
	}
	if err := os.MkdirAll(opts.Out, 0o755); err != nil {
		return nil, err
	}
	work, err := os.MkdirTemp("", "imagebuild-")
	if err != nil {
		return nil, err
	}
	defer func() { _ = os.RemoveAll(work) }()

	base, err := baseLayer(opts.CABundle).write(filepath.Join(work, "base.tar.gz"), opts.Created)
	if err != nil {
		return nil, err
	}
	var results []result
	for _, s := range specs {
		start := time.Now()
		r, err := buildImage(ctx, opts, work, base, s)
		if err != nil {
			return results, fmt.Errorf("%s: %w", s.repo, err)
		}
		_, _ = fmt.Fprintf(opts.Log, "imagebuild: wrote %s (%s) in %s\n", r.File, r.Ref, time.Since(start).Round(100*time.Millisecond))
		results = append(results, r)
	}
	return results, nil
}

func moduleRoot(ctx context.Context, goCmd string) (string, error) {
	out, err := exec.CommandContext(ctx, goCmd, "env", "GOMOD").Output()
	if err != nil {
		return "", fmt.Errorf("go env GOMOD: %w", err)
	}
	gomod := strings.TrimSpace(string(out))
	if gomod == "" || gomod == os.DevNull {
		return "", errors.New("not inside the Stevedore module: run from the repository or pass -root")
	}
	return filepath.Dir(gomod), nil
}

// selectSpecs returns the specs of the images to build, in a fixed order.
func selectSpecs(opts options) ([]imageSpec, error) {
	if strings.ContainsAny(opts.Registry, " \t\n'\"") || strings.HasSuffix(opts.Registry, "/") {
		return nil, fmt.Errorf("registry %q: want a registry and path without a trailing slash, e.g. ghcr.io/stevedore-dev", opts.Registry)
	}
	ldflags := "-s -w -X " + versionVar + "=" + opts.Version + " -X " + registryVar + "=" + opts.Registry
	tag := sanitizeTag(opts.Version)
	all := []imageSpec{
		{
			key: "manager", repo: "stevedore-manager", tag: tag, version: opts.Version, source: opts.Source, registry: opts.Registry,
			title: "stevedore-manager", description: "Stevedore operator (Kubernetes controller manager)",
			pkg: "./cmd/manager", ldflags: ldflags, binPath: "/manager",
			config: v1.Config{Entrypoint: []string{"/manager"}},
		},
		{
			key: "agent", repo: "stevedore-agent", tag: tag, version: opts.Version, source: opts.Source, registry: opts.Registry,
			title: "stevedore-agent", description: "Stevedore agent: Prometheus sidecar shipper and store gateway (Thanos StoreAPI)",
			pkg: "./cmd/agent", ldflags: ldflags, binPath: "/agent",
			config: v1.Config{Entrypoint: []string{"/agent"}},
		},
		{
			key: "pause", repo: "stevedore-pause", tag: pauseTag, version: pauseTag, source: opts.Source,
			title: "stevedore-pause", description: "Pod sandbox (pause) container for Stevedore's local cluster",
			pkg: "./hack/imagebuild/pause", ldflags: "-s -w", binPath: "/pause",
			config: v1.Config{Entrypoint: []string{"/pause"}},
		},
	}
	for _, p := range peerDefs {
		s := imageSpec{
			key: p.key, repo: "stevedore-test-" + p.key, source: p.source,
			title: "stevedore-test-" + p.key, description: p.description,
			hostBin: opts.Peers[p.key], binPath: p.binPath, extra: p.extra, config: p.config, user: p.user,
		}
		if s.hostBin != "" && (len(opts.Only) == 0 || slices.Contains(opts.Only, p.key)) {
			s.tag = peerTag(p.key, s.hostBin)
			if p.tag != nil {
				t, err := p.tag(s.hostBin)
				if err != nil {
					return nil, fmt.Errorf("%s image: %w", p.key, err)
				}
				s.tag = sanitizeTag(t)
			}
			s.version = s.tag
			if p.upstream != nil {
				if u := p.upstream(s.tag); u != "" {
					s.aliases = append(s.aliases, u)
				}
			}
			if p.files != nil {
				files, err := p.files(s.hostBin)
				if err != nil {
					return nil, fmt.Errorf("%s image: %w", p.key, err)
				}
				s.files = files
			}
		}
		all = append(all, s)
	}
	olm, err := olmSpecs(opts)
	if err != nil {
		return nil, err
	}
	all = append(all, olm...)

	known := make([]string, 0, len(all))
	for _, s := range all {
		known = append(known, s.key)
	}
	for _, k := range opts.Only {
		if !slices.Contains(known, k) {
			return nil, fmt.Errorf("-only: unknown image %q (known: %s)", k, strings.Join(known, ","))
		}
	}
	plats, err := parsePlatforms(opts.Platforms)
	if err != nil {
		return nil, err
	}
	var specs []imageSpec
	for _, s := range all {
		switch {
		case len(opts.Only) > 0 && !slices.Contains(opts.Only, s.key):
			continue
		case s.pkg == "" && s.hostBin == "" && s.scratch:
			// the bundle image: files only
		case s.pkg == "" && s.hostBin == "" && len(opts.Only) > 0:
			env := ""
			for _, p := range peerDefs {
				if p.key == s.key {
					env = p.env
				}
			}
			return nil, fmt.Errorf("image %s needs its binary: pass -%s PATH or set $%s (eval \"$(hack/testbin.sh %s)\")", s.key, s.key, env, s.key)
		case s.pkg == "" && s.hostBin == "":
			continue // peer binary not provisioned: skipped by default
		}
		if s.hostBin != "" {
			for _, p := range plats {
				if p != defaultPlatform {
					return nil, fmt.Errorf("image %s is made from a host-provided %s binary and cannot be built for %s: leave it out (-only manager,agent for a release) or use -platforms %s", s.key, defaultPlatform, p, defaultPlatform)
				}
			}
			if err := checkStaticBinary(s.hostBin); err != nil {
				return nil, err
			}
			for _, f := range slices.Sorted(maps.Values(s.files)) {
				if err := checkStaticBinary(f); err != nil {
					return nil, err
				}
			}
		}
		specs = append(specs, s)
	}
	return specs, nil
}

var (
	invalidTagChars = regexp.MustCompile(`[^A-Za-z0-9_.-]`)
	peerDirVersion  = regexp.MustCompile(`^[A-Za-z0-9_.-]+$`)
)

// sanitizeTag turns a version into a valid image tag: characters outside
// [A-Za-z0-9_.-] become '-', a leading '.' or '-' gets a 'v' in front, and it is
// cut to 128 characters.
func sanitizeTag(v string) string {
	t := invalidTagChars.ReplaceAllString(v, "-")
	if t == "" || t[0] == '.' || t[0] == '-' {
		t = "v" + t
	}
	if len(t) > 128 {
		t = t[:128]
	}
	return t
}

// peerTag derives the tag of a test peer image from hack/testbin.sh's cache
// layout, <cache>/<name>-<version>/<binary>; "local" otherwise.
func peerTag(key, bin string) string {
	dir := filepath.Base(filepath.Dir(bin))
	if v, ok := strings.CutPrefix(dir, key+"-"); ok && v != "" && peerDirVersion.MatchString(v) {
		return sanitizeTag(v)
	}
	return "local"
}

// checkStaticBinary refuses what cannot run on the base image: anything but a
// statically linked linux/amd64 ELF executable.
func checkStaticBinary(p string) error { return checkStaticBinaryFor(p, defaultPlatform) }

// checkStaticBinaryFor refuses anything but a statically linked 64-bit ELF
// executable for plat.
func checkStaticBinaryFor(p string, plat platform) error {
	f, err := elf.Open(p)
	if err != nil {
		return fmt.Errorf("%s: not a linux executable: %w", p, err)
	}
	defer func() { _ = f.Close() }()
	if f.Class != elf.ELFCLASS64 || f.Machine != plat.Machine {
		return fmt.Errorf("%s: not an %s binary (%v %v)", p, plat.Arch, f.Class, f.Machine)
	}
	for _, prog := range f.Progs {
		if prog.Type == elf.PT_INTERP {
			return fmt.Errorf("%s: dynamically linked; the base image has no libc, build it with CGO_ENABLED=0", p)
		}
	}
	return nil
}

// buildImage builds (or takes) the binary of s for each platform, assembles
// the images and writes their tarball in opts.Format.
func buildImage(ctx context.Context, opts options, work string, base v1.Layer, s imageSpec) (result, error) {
	registry := s.registry
	if registry == "" {
		registry = opts.Repo
	}
	ref, err := name.NewTag(registry + "/" + s.repo + ":" + s.tag)
	if err != nil {
		return result{}, err
	}
	var aliases []name.Tag
	for _, a := range s.aliases {
		t, err := name.NewTag(a)
		if err != nil {
			return result{}, fmt.Errorf("upstream reference %q: %w", a, err)
		}
		aliases = append(aliases, t)
	}
	refs := append([]name.Tag{ref}, aliases...)
	plats, err := parsePlatforms(opts.Platforms)
	if err != nil {
		return result{}, err
	}

	if opts.Format != formatOCI {
		img, err := assembleImage(ctx, opts, work, base, s, plats[0], false)
		if err != nil {
			return result{}, err
		}
		final := filepath.Join(opts.Out, s.repo+".tar")
		if err := writeTarball(final, refs, img); err != nil {
			return result{}, err
		}
		return result{Key: s.key, Ref: ref, Aliases: aliases, File: final}, nil
	}

	var images []platformImage
	for _, p := range plats {
		img, err := assembleImage(ctx, opts, work, base, s, p, true)
		if err != nil {
			return result{}, fmt.Errorf("%s: %w", p, err)
		}
		images = append(images, platformImage{platform: p, image: img})
	}
	annotations := imageLabels(opts, s)
	annotations[annotationCreated] = opts.Created.Format(time.RFC3339)
	final := filepath.Join(opts.Out, s.repo+"-"+s.tag+".oci.tar")
	err = writeAtomic(final, func(w io.Writer) error {
		return writeOCIArchive(w, refs, annotations, opts.Created, images)
	})
	if err != nil {
		return result{}, err
	}
	return result{Key: s.key, Ref: ref, Aliases: aliases, File: final}, nil
}

// assembleImage builds (or takes) the binary of s for p and assembles its
// image: the base layer plus a layer with the binary and s's extras. With
// oci, the manifest, config and layers have OCI media types.
func assembleImage(ctx context.Context, opts options, work string, base v1.Layer, s imageSpec, p platform, oci bool) (v1.Image, error) {
	file := s.key // work file names; a docker-archive has one platform
	if oci {
		file += "-" + p.OS + "-" + p.Arch
	}
	bin := s.hostBin
	if s.pkg != "" {
		bin = filepath.Join(work, file)
		if oci {
			_, _ = fmt.Fprintf(opts.Log, "imagebuild: go build %s (%s)\n", s.pkg, p)
		} else {
			_, _ = fmt.Fprintf(opts.Log, "imagebuild: go build %s\n", s.pkg)
		}
		cmd := exec.CommandContext(ctx, opts.GoCommand, "build", "-trimpath", "-ldflags", s.ldflags, "-o", bin, s.pkg)
		cmd.Dir = opts.Root
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS="+p.OS, "GOARCH="+p.Arch)
		cmd.Stdout = opts.Log
		cmd.Stderr = opts.Log
		if err := cmd.Run(); err != nil {
			return nil, fmt.Errorf("go build %s: %w", s.pkg, err)
		}
	}
	app := newLayer()
	if s.binPath != "" {
		if err := checkStaticBinaryFor(bin, p); err != nil {
			return nil, err
		}
		app.hostFile(s.binPath, 0o755, bin)
	}
	for inImage, host := range s.files {
		app.hostFile(inImage, 0o755, host)
	}
	if s.extra != nil {
		s.extra(app)
	}
	appLayer, err := app.write(filepath.Join(work, file+".tar.gz"), opts.Created)
	if err != nil {
		return nil, err
	}

	var layerType types.MediaType // the layer's own (docker) type when empty
	if oci {
		layerType = types.OCILayer
	}
	created := v1.Time{Time: opts.Created}
	var layers []mutate.Addendum
	if !s.scratch {
		layers = append(layers, mutate.Addendum{Layer: base, MediaType: layerType, History: v1.History{Created: created, CreatedBy: "imagebuild: distroless-style static base (nonroot 65532, /tmp, CA certificates)", Comment: "hack/imagebuild"}})
	}
	copied := s.binPath
	if copied == "" {
		copied = s.title + " files"
	}
	layers = append(layers, mutate.Addendum{Layer: appLayer, MediaType: layerType, History: v1.History{Created: created, CreatedBy: "imagebuild: COPY " + copied, Comment: "hack/imagebuild"}})
	img, err := mutate.Append(empty.Image, layers...)
	if err != nil {
		return nil, err
	}
	cf, err := img.ConfigFile()
	if err != nil {
		return nil, err
	}
	cf = cf.DeepCopy()
	cf.Architecture = p.Arch
	cf.OS = p.OS
	cf.Created = created
	cfg := s.config
	cfg.User = s.user
	if cfg.User == "" {
		cfg.User = fmt.Sprintf("%d:%d", nonrootUID, nonrootGID)
	}
	if cfg.WorkingDir == "" {
		cfg.WorkingDir = "/"
	}
	cfg.Env = []string{defaultPath, sslCertFileEnv}
	if s.scratch {
		cfg.User, cfg.Env = "", nil
	}
	cfg.Labels = imageLabels(opts, s)
	cf.Config = cfg
	img, err = mutate.ConfigFile(img, cf)
	if err != nil {
		return nil, err
	}
	if oci {
		img = mutate.ConfigMediaType(mutate.MediaType(img, types.OCIManifestSchema1), types.OCIConfigJSON)
	}
	return img, nil
}

// imageLabels are the labels of s's image config (and the annotations of
// its OCI image index).
func imageLabels(opts options, s imageSpec) map[string]string {
	labels := map[string]string{
		"org.opencontainers.image.title":       s.title,
		"org.opencontainers.image.description": s.description,
		"org.opencontainers.image.source":      s.source,
		"org.opencontainers.image.version":     s.version,
	}
	if opts.Revision != "" && s.pkg != "" {
		labels["org.opencontainers.image.revision"] = opts.Revision
	}
	maps.Copy(labels, s.labels)
	return labels
}

// writeTarball writes img as a docker-archive tarball tagged with every ref,
// in that order, to a temporary file next to final and renames it into place,
// so a reader never sees half a tarball.
func writeTarball(final string, refs []name.Tag, img v1.Image) error {
	return writeAtomic(final, func(w io.Writer) error { return writeDockerArchive(w, refs, img) })
}

// writeAtomic writes final through write into a temporary file next to it,
// mode 0644, and renames it into place.
func writeAtomic(final string, write func(io.Writer) error) error {
	tmp, err := os.CreateTemp(filepath.Dir(final), "."+filepath.Base(final)+".*.tmp")
	if err != nil {
		return err
	}
	tmpName := tmp.Name()
	ok := false
	defer func() {
		if !ok {
			_ = tmp.Close()
			_ = os.Remove(tmpName)
		}
	}()
	bw := bufio.NewWriterSize(tmp, 1<<20)
	if err := write(bw); err != nil {
		return err
	}
	if err := bw.Flush(); err != nil {
		return err
	}
	if err := tmp.Chmod(0o644); err != nil {
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	if err := os.Rename(tmpName, final); err != nil {
		return err
	}
	ok = true
	return nil
}

// writeDockerArchive writes the layout of go-containerregistry's tarball.Write
// (config blob, <hex>.tar.gz layers, manifest.json) with the RepoTags in the
// given order: tarball.MultiRefWrite takes them from a map, in random order,
// which would make the tarball differ from build to build.
func writeDockerArchive(w io.Writer, refs []name.Tag, img v1.Image) error {
	if len(refs) == 0 {
		return errors.New("no image reference")
	}
	cfgName, err := img.ConfigName()
	if err != nil {
		return err
	}
	cfg, err := img.RawConfigFile()
	if err != nil {
		return err
	}
	layers, err := img.Layers()
	if err != nil {
		return err
	}
	tw := tar.NewWriter(w)
	entry := func(name string, size int64, r io.Reader) error {
		if err := tw.WriteHeader(&tar.Header{Name: name, Mode: 0o644, Typeflag: tar.TypeReg, Size: size}); err != nil {
			return err
		}
		n, err := io.Copy(tw, r)
		if err != nil {
			return fmt.Errorf("write %s: %w", name, err)
		}
		if n != size {
			return fmt.Errorf("write %s: %d bytes, want %d", name, n, size)
		}
		return nil
	}
	if err := entry(cfgName.String(), int64(len(cfg)), bytes.NewReader(cfg)); err != nil {
		return err
	}
	desc := tarball.Descriptor{Config: cfgName.String()}
	for _, r := range refs {
		desc.RepoTags = append(desc.RepoTags, r.String())
	}
	for _, l := range layers {
		d, err := l.Digest()
		if err != nil {
			return err
		}
		size, err := l.Size()
		if err != nil {
			return err
		}
		file := d.Hex + ".tar.gz"
		written := slices.Contains(desc.Layers, file)
		desc.Layers = append(desc.Layers, file)
		if written {
			continue
		}
		rc, err := l.Compressed()
		if err != nil {
			return err
		}
		err = entry(file, size, rc)
		_ = rc.Close()
		if err != nil {
			return err
		}
	}
	manifest, err := json.Marshal(tarball.Manifest{desc})
	if err != nil {
		return err
	}
	if err := entry("manifest.json", int64(len(manifest)), bytes.NewReader(manifest)); err != nil {
		return err
	}
	return tw.Close()
}
