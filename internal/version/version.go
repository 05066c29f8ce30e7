// Package version holds the build version of the Stevedore binaries and the
// registry their images are published under.
package version

import "runtime/debug"

// Version is set at build time with -ldflags "-X .../internal/version.Version=v1.2.3".
var Version = ""

// Registry is the registry (and organisation) the release images are
// published under: <Registry>/stevedore-manager:<version> and
// <Registry>/stevedore-agent:<version>. Builds for another registry set it
// with -ldflags "-X .../internal/version.Registry=registry.example.com/team".
var Registry = "ghcr.io/stevedore-dev"

// Get returns the build version, falling back to the module version recorded
// by the Go toolchain and then to "dev".
func Get() string {
	if Version != "" {
		return Version
	}
	if bi, ok := debug.ReadBuildInfo(); ok && bi.Main.Version != "" && bi.Main.Version != "(devel)" {
		return bi.Main.Version
	}
	return "dev"
}

// AgentImage is the agent image of this build: <Registry>/stevedore-agent:<version>,
// the manager's default --agent-image.
func AgentImage() string {
	return Registry + "/stevedore-agent:" + Get()
}
