package storepb

import (
	"fmt"

	"github.com/prometheus/prometheus/model/labels"
	"google.golang.org/grpc"
	"google.golang.org/grpc/encoding"
	"google.golang.org/grpc/encoding/proto"
	"google.golang.org/grpc/mem"
	"google.golang.org/protobuf/encoding/protowire"
)

// RawMessage is a message already in protobuf wire form, such as a
// SeriesResponse built with the Append functions below: the concatenation
// of its parts, which lets chunk bytes be sent from where they were read
// without another copy. Servers that send one must be created with
// ServerCodec.
//
// Large Series answers are encoded straight from the bytes read from object
// storage: building millions of Series, AggrChunk and Chunk messages only to
// marshal them cost more CPU (mostly GC) than everything else a store gateway
// does for such a query.
type RawMessage [][]byte

// ServerCodec makes a gRPC server send RawMessage as is and everything else
// as protobuf.
func ServerCodec() grpc.ServerOption {
	return grpc.ForceServerCodecV2(codec{encoding.GetCodecV2(proto.Name)})
}

type codec struct{ proto encoding.CodecV2 }

func (c codec) Marshal(v any) (mem.BufferSlice, error) {
	if r, ok := v.(RawMessage); ok {
		// The transport may still reference the bytes after SendMsg returns:
		// RawMessage buffers are never reused, so they need no freeing.
		out := make(mem.BufferSlice, 0, len(r))
		for _, p := range r {
			if len(p) > 0 {
				out = append(out, mem.SliceBuffer(p))
			}
		}
		return out, nil
	}
	return c.proto.Marshal(v)
}

func (c codec) Unmarshal(data mem.BufferSlice, v any) error {
	if _, ok := v.(RawMessage); ok {
		return fmt.Errorf("storepb: cannot unmarshal into RawMessage")
	}
	return c.proto.Unmarshal(data, v)
}

func (codec) Name() string { return proto.Name }

// Field numbers of the messages written by hand.
const (
	seriesResponseSeries = 1 // SeriesResponse.series
	seriesResponseBatch  = 4 // SeriesResponse.batch
	seriesBatchSeries    = 1 // SeriesBatch.series
	seriesLabels         = 1 // Series.labels
	seriesChunks         = 2 // Series.chunks
	labelName            = 1
	labelValue           = 2
	aggrMinTime          = 1
	aggrMaxTime          = 2
	aggrRaw              = 3
	chunkType            = 1
	chunkData            = 2
	chunkHash            = 3
)

// appendBytesField appends the tag and length of a length-delimited field
// whose n bytes of content the caller appends next.
func appendBytesField(b []byte, num protowire.Number, n int) []byte {
	b = protowire.AppendTag(b, num, protowire.BytesType)
	return protowire.AppendVarint(b, uint64(n))
}

// BytesFieldSize is the size of a length-delimited field with n bytes of content.
func BytesFieldSize(n int) int { return 1 + protowire.SizeVarint(uint64(n)) + n }

// varintField returns the size of a varint field, 0 when v is the default
// value that proto3 leaves out.
func varintField(v uint64) int {
	if v == 0 {
		return 0
	}
	return 1 + protowire.SizeVarint(v)
}

func appendVarintField(b []byte, num protowire.Number, v uint64) []byte {
	if v == 0 {
		return b
	}
	b = protowire.AppendTag(b, num, protowire.VarintType)
	return protowire.AppendVarint(b, v)
}

func chunkSize(enc Chunk_Encoding, dataLen int, hash uint64) int {
	n := varintField(uint64(enc)) + varintField(hash)
	if dataLen > 0 {
		n += BytesFieldSize(dataLen)
	}
	return n
}

func aggrChunkSize(minTime, maxTime int64, enc Chunk_Encoding, dataLen int, hash uint64) int {
	return varintField(uint64(minTime)) + varintField(uint64(maxTime)) + BytesFieldSize(chunkSize(enc, dataLen, hash))
}

// AppendSeriesChunk appends an AggrChunk holding one raw chunk, encoded as
// an element of Series.chunks: the bytes proto.Marshal writes for it.
func AppendSeriesChunk(b []byte, minTime, maxTime int64, enc Chunk_Encoding, data []byte, hash uint64) []byte {
	b = appendBytesField(b, seriesChunks, aggrChunkSize(minTime, maxTime, enc, len(data), hash))
	b = appendVarintField(b, aggrMinTime, uint64(minTime))
	b = appendVarintField(b, aggrMaxTime, uint64(maxTime))
	b = appendBytesField(b, aggrRaw, chunkSize(enc, len(data), hash))
	b = appendVarintField(b, chunkType, uint64(enc))
	if len(data) > 0 {
		b = appendBytesField(b, chunkData, len(data))
		b = append(b, data...)
	}
	return appendVarintField(b, chunkHash, hash)
}

func labelSize(l labels.Label) int {
	n := 0
	if l.Name != "" {
		n += BytesFieldSize(len(l.Name))
	}
	if l.Value != "" {
		n += BytesFieldSize(len(l.Value))
	}
	return n
}

// LabelsSize is the size of what AppendLabels appends.
func LabelsSize(lset labels.Labels) int {
	n := 0
	lset.Range(func(l labels.Label) { n += BytesFieldSize(labelSize(l)) })
	return n
}

// AppendLabels appends lset as the labels of a Series, the first field of
// its encoding; the series' chunks follow.
func AppendLabels(b []byte, lset labels.Labels) []byte {
	lset.Range(func(l labels.Label) {
		b = appendBytesField(b, seriesLabels, labelSize(l))
		if l.Name != "" {
			b = appendBytesField(b, labelName, len(l.Name))
			b = append(b, l.Name...)
		}
		if l.Value != "" {
			b = appendBytesField(b, labelValue, len(l.Value))
			b = append(b, l.Value...)
		}
	})
	return b
}

// AppendSeriesResponse appends the start of a SeriesResponse carrying one
// series whose encoding (AppendLabels, then AppendSeriesChunk for each chunk)
// is seriesLen bytes long and follows.
func AppendSeriesResponse(b []byte, seriesLen int) []byte {
	return appendBytesField(b, seriesResponseSeries, seriesLen)
}

// AppendBatchSeries appends the start of one series of a SeriesBatch, like
// AppendSeriesResponse; AppendBatchResponse wraps the batch.
func AppendBatchSeries(b []byte, seriesLen int) []byte {
	return appendBytesField(b, seriesBatchSeries, seriesLen)
}

// AppendBatchResponse appends a SeriesResponse carrying the SeriesBatch
// whose series (each started with AppendBatchSeries) are batch.
func AppendBatchResponse(b []byte, batch []byte) []byte {
	b = appendBytesField(b, seriesResponseBatch, len(batch))
	return append(b, batch...)
}

// SubChunk is one aggregate of a downsampled chunk.
type SubChunk struct {
	Aggr Aggr
	Enc  Chunk_Encoding
	Data []byte
	Hash uint64
}

// aggrField is the AggrChunk field of an aggregate: count=4 … counter=8.
func aggrField(a Aggr) protowire.Number { return protowire.Number(3 + int32(a)) }

// AppendSeriesAggrChunk appends an AggrChunk of a downsampled block holding
// the aggregates subs, sorted by Aggr, as an element of Series.chunks.
func AppendSeriesAggrChunk(b []byte, minTime, maxTime int64, subs []SubChunk) []byte {
	n := varintField(uint64(minTime)) + varintField(uint64(maxTime))
	for _, s := range subs {
		n += BytesFieldSize(chunkSize(s.Enc, len(s.Data), s.Hash))
	}
	b = appendBytesField(b, seriesChunks, n)
	b = appendVarintField(b, aggrMinTime, uint64(minTime))
	b = appendVarintField(b, aggrMaxTime, uint64(maxTime))
	for _, s := range subs {
		b = appendBytesField(b, aggrField(s.Aggr), chunkSize(s.Enc, len(s.Data), s.Hash))
		b = appendVarintField(b, chunkType, uint64(s.Enc))
		if len(s.Data) > 0 {
			b = appendBytesField(b, chunkData, len(s.Data))
			b = append(b, s.Data...)
		}
		b = appendVarintField(b, chunkHash, s.Hash)
	}
	return b
}
