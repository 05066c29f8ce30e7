// Package metadatapb is the Thanos Metadata API wire protocol (service thanos.Metadata):
// messages and service stubs generated from rpc.proto with standard protoc-gen-go.
package metadatapb

//go:generate make -C ../.. proto
