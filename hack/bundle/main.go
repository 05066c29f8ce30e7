// Command bundle writes the OLM bundle of Stevedore (registry+v1, the layout
// operator-sdk produces) from the kustomize sources in config/: the
// ClusterServiceVersion and the CRDs in <out>/manifests, the bundle
// annotations in <out>/metadata, and bundle.Dockerfile beside <out>.
//
//	go run ./hack/bundle -out bundle -registry ghcr.io/stevedore-dev -version 0.1.0
//
// The output depends only on its inputs (no timestamps), so running it twice
// leaves git clean.
package main

import (
	"flag"
	"fmt"
	"os"
)

func main() {
	opts := Options{}
	flag.StringVar(&opts.Root, "root", ".", "Repository root holding config/.")
	flag.StringVar(&opts.Out, "out", "bundle", "Bundle directory to write (manifests/ and metadata/); bundle.Dockerfile goes into its parent.")
	flag.StringVar(&opts.Registry, "registry", DefaultRegistry, "Registry of the manager and agent images.")
	flag.StringVar(&opts.Version, "version", DefaultVersion, "Operator version (semver, a leading v is dropped); images are tagged v<version>.")
	flag.StringVar(&opts.Package, "package", DefaultPackage, "OLM package name.")
	flag.StringVar(&opts.Channels, "channels", DefaultChannel, "Comma-separated OLM channels of the bundle.")
	flag.StringVar(&opts.DefaultChannel, "default-channel", DefaultChannel, "Default OLM channel of the package.")
	flag.Parse()
	if flag.NArg() > 0 {
		fmt.Fprintf(os.Stderr, "bundle: unexpected arguments %q\n", flag.Args())
		os.Exit(2)
	}
	b, err := Generate(opts)
	if err != nil {
		fmt.Fprintf(os.Stderr, "bundle: %v\n", err)
		os.Exit(1)
	}
	for _, w := range b.Warnings {
		fmt.Fprintf(os.Stderr, "bundle: warning: %s\n", w)
	}
	if err := b.Write(opts.Out); err != nil {
		fmt.Fprintf(os.Stderr, "bundle: %v\n", err)
		os.Exit(1)
	}
}
