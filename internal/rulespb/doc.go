// Package rulespb is the Thanos Rules API wire protocol (service thanos.Rules):
// messages and service stubs generated from rpc.proto with standard protoc-gen-go.
package rulespb

//go:generate make -C ../.. proto
