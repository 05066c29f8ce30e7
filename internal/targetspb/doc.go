// Package targetspb is the Thanos Targets API wire protocol (service thanos.Targets):
// messages and service stubs generated from rpc.proto with standard protoc-gen-go.
package targetspb

//go:generate make -C ../.. proto
