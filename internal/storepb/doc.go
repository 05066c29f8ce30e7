// Package storepb is the Thanos StoreAPI wire protocol (package thanos):
// generated messages and service stubs, plus the helpers every StoreAPI server
// needs — label and matcher conversion, external-label handling, query
// sharding — and hand encoding of Series responses (RawMessage).
package storepb

//go:generate make -C ../.. proto
