// Package storepb is the Thanos StoreAPI wire protocol (package thanos):
// generated messages and service stubs, plus the helpers every StoreAPI server
// needs — label and matcher conversion, external-label handling and a sorted
// merge of series sets.
package storepb

//go:generate make -C ../.. proto
