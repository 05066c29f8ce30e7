# Images for users with a Docker engine: `docker build --target manager -t stevedore-manager .`
# and `docker build --target agent -t stevedore-agent .`. Static binaries on a
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
RUN CGO_ENABLED=0 go build -trimpath -ldflags "-s -w -X github.com/stevedore-dev/stevedore/internal/version.Version=${VERSION}" -o /out/manager ./cmd/manager && \
    CGO_ENABLED=0 go build -trimpath -ldflags "-s -w -X github.com/stevedore-dev/stevedore/internal/version.Version=${VERSION}" -o /out/agent ./cmd/agent

FROM gcr.io/distroless/static:nonroot AS manager
COPY --from=build /out/manager /manager
USER 65532:65532
ENTRYPOINT ["/manager"]

FROM gcr.io/distroless/static:nonroot AS agent
COPY --from=build /out/agent /agent
USER 65532:65532
ENTRYPOINT ["/agent"]
