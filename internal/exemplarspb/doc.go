// Package exemplarspb is the Thanos Exemplars API wire protocol (service thanos.Exemplars):
// messages and service stubs generated from rpc.proto with standard protoc-gen-go.
package exemplarspb

//go:generate make -C ../.. proto
