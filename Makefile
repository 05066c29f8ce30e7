# Stevedore build. `make help` lists the targets.

VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
# Registry of the release images; the manager's default --agent-image is
# $(REGISTRY)/stevedore-agent:$(VERSION).
REGISTRY ?= ghcr.io/stevedore-dev
LDFLAGS := -X github.com/stevedore-dev/stevedore/internal/version.Version=$(VERSION) -X github.com/stevedore-dev/stevedore/internal/version.Registry=$(REGISTRY)
BIN ?= bin
GO_TOOL := go tool -modfile=hack/tools/dev/go.mod
# Tests that need the real servers read their paths from the environment that
# hack/testbin.sh prints; building them the first time takes minutes.
TESTBIN_ENV = eval "$$(hack/testbin.sh)"
GOTEST_FLAGS ?= -count=1 -timeout 40m

.PHONY: all
all: build

.PHONY: help
help: ## Show this help.
	@awk 'BEGIN {FS = ":.*##"} /^[a-zA-Z_-]+:.*##/ {printf "  %-14s %s\n", $$1, $$2}' $(MAKEFILE_LIST)

##@ Build

.PHONY: build
build: ## Build the manager and agent binaries into bin/.
	CGO_ENABLED=0 go build -trimpath -ldflags "$(LDFLAGS)" -o $(BIN)/manager ./cmd/manager
	CGO_ENABLED=0 go build -trimpath -ldflags "$(LDFLAGS)" -o $(BIN)/agent ./cmd/agent

##@ Code generation (re-running leaves git clean)

.PHONY: generate
generate: ## Generate deepcopy code for the API types.
	$(GO_TOOL) controller-gen object:headerFile=hack/boilerplate.go.txt paths=./api/...

.PHONY: manifests
manifests: ## Generate CRD and RBAC manifests from markers.
	$(GO_TOOL) controller-gen rbac:roleName=stevedore-manager crd \
		paths=./api/... paths=./controllers/... \
		output:crd:artifacts:config=config/crd/bases output:rbac:artifacts:config=config/rbac

# Version of the OLM bundle in bundle/ (hack/bundle's test checks it against
# these defaults); a release writes its own with BUNDLE_VERSION and
# BUNDLE_DIR. hack/bundle is a Go module of its own (see its go.mod).
REGISTRY ?= ghcr.io/stevedore-dev
BUNDLE_VERSION ?= 0.1.0
BUNDLE_DIR ?= bundle

.PHONY: bundle
bundle: ## Generate the OLM bundle (bundle/, bundle.Dockerfile) from config/.
	cd hack/bundle && go run . -root $(CURDIR) -registry $(REGISTRY) -version $(BUNDLE_VERSION) -out $(abspath $(BUNDLE_DIR))

.PHONY: proto
proto: ## Regenerate the StoreAPI Go code from internal/**/*.proto.
	@PROTOC=$$(command -v protoc || hack/testbin.sh protoc | sed -n 's/^export PROTOC=//p'); \
	go build -o $(BIN)/protoc-gen-go -modfile=hack/tools/dev/go.mod google.golang.org/protobuf/cmd/protoc-gen-go && \
	go build -o $(BIN)/protoc-gen-go-grpc -modfile=hack/tools/dev/go.mod google.golang.org/grpc/cmd/protoc-gen-go-grpc && \
	$$PROTOC --plugin=protoc-gen-go=$(BIN)/protoc-gen-go --plugin=protoc-gen-go-grpc=$(BIN)/protoc-gen-go-grpc \
		-I . --go_out=. --go_opt=module=github.com/stevedore-dev/stevedore \
		--go-grpc_out=. --go-grpc_opt=module=github.com/stevedore-dev/stevedore \
		$$(find internal -name '*.proto' | sort)

##@ Quality

.PHONY: fmt
fmt: ## Format the Go code.
	gofmt -s -w $$(git ls-files '*.go')

.PHONY: vet
vet: ## Run go vet.
	go vet ./...

.PHONY: lint
lint: ## Run golangci-lint.
	$(GO_TOOL) golangci-lint run ./...

##@ Test

.PHONY: testbin
testbin: ## Provision the real test servers (cached by version).
	hack/testbin.sh

.PHONY: test
test: ## Run every test: unit, envtest, integration (real MinIO/Prometheus/memcached/Thanos), then the e2e suite on a real cluster.
	$(TESTBIN_ENV) && go test $(GOTEST_FLAGS) ./...
	cd hack/bundle && go test $(GOTEST_FLAGS) ./...
	hack/e2e.sh

.PHONY: e2e
e2e: ## End-to-end suite on a real single-node cluster (needs root); KEEP=1 leaves it running.
	hack/e2e.sh

.PHONY: test-unit
test-unit: ## Run only the tests that need no server.
	go test -count=1 -short ./...

##@ Run

.PHONY: run
run: ## Local demo: control plane, CRDs, operator, samples, `kubectl get`.
	hack/run-local.sh

.PHONY: demo
demo: ## Stevedore on a real single-node cluster: operator, MinIO, shipper, store gateway, querier (needs root).
	hack/demo.sh

.PHONY: demo-down
demo-down: ## Tear down the demo cluster.
	hack/demo.sh down

.PHONY: run-down
run-down: ## Stop what `KEEP=1 make run` left running.
	-@for p in bin/local/manager.pid bin/local/localcp.pid; do [ -f $$p ] && kill $$(cat $$p); rm -f $$p; done

# Release image archives: $(DIST)/images/stevedore-{manager,agent}-$(VERSION).oci.tar,
# each an OCI image layout whose index lists linux/amd64 and linux/arm64
# (skopeo copy --all oci-archive:FILE docker://REF pushes both). Timestamps
# are the last commit's time unless SOURCE_DATE_EPOCH is set.
DIST ?= dist

.PHONY: release-images
release-images: ## Build the manager and agent for linux/amd64 and linux/arm64 as OCI archives into $(DIST)/images/ (VERSION=vX.Y.Z).
	SOURCE_DATE_EPOCH=$${SOURCE_DATE_EPOCH:-$$(git log -1 --format=%ct 2>/dev/null || echo 0)} \
		go run ./hack/imagebuild -format oci -platforms linux/amd64,linux/arm64 -only manager,agent \
		-registry $(REGISTRY) -version $(VERSION) -revision "$$(git rev-parse HEAD 2>/dev/null)" -out $(DIST)/images

##@ Images

# Images for the test peers are made from the static binaries hack/testbin.sh
# provisions (cached by version; a cold cache builds them first). Set
# IMAGES_PEERS= to build only manager, agent and pause; IMAGEBUILD_FLAGS passes
# more flags to hack/imagebuild (go run ./hack/imagebuild -h).
IMAGES_PEERS ?= prometheus minio thanos

.PHONY: images
images: ## Build image tarballs (manager, agent, pause, test peers) into bin/images/ without Docker.
	$(if $(strip $(IMAGES_PEERS)),eval "$$(hack/testbin.sh $(IMAGES_PEERS))" && )SOURCE_DATE_EPOCH=$$(git log -1 --format=%ct 2>/dev/null || echo 0) \
		go run ./hack/imagebuild -version $(VERSION) -registry $(REGISTRY) -revision "$$(git rev-parse HEAD 2>/dev/null)" -out $(BIN)/images $(IMAGEBUILD_FLAGS)
