# Images for users with a Docker engine:
# `docker build --target manager --build-arg VERSION=v1.2.3 -t ghcr.io/stevedore-dev/stevedore-manager:v1.2.3 .`
# and the same with `--target agent` and stevedore-agent. Static binaries on a
# distroless base, running as non-root.
FROM golang:1.26 AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY api/ api/
COPY cmd/ cmd/
COPY controllers/ controllers/
COPY internal/ internal/
ARG VERSION=dev
# The manager's default agent image is ${REGISTRY}/stevedore-agent:${VERSION}.
ARG REGISTRY=ghcr.io/stevedore-dev
RUN LDFLAGS="-s -w -X github.com/stevedore-dev/stevedore/internal/version.Version=${VERSION} -X github.com/stevedore-dev/stevedore/internal/version.Registry=${REGISTRY}" && \
    CGO_ENABLED=0 go build -trimpath -ldflags "$LDFLAGS" -o /out/manager ./cmd/manager && \
    CGO_ENABLED=0 go build -trimpath -ldflags "$LDFLAGS" -o /out/agent ./cmd/agent

FROM gcr.io/distroless/static:nonroot AS manager
COPY --from=build /out/manager /manager
USER 65532:65532
ENTRYPOINT ["/manager"]

FROM gcr.io/distroless/static:nonroot AS agent
COPY --from=build /out/agent /agent
USER 65532:65532
ENTRYPOINT ["/agent"]
