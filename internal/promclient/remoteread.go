package promclient

import (
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"mime"
	"net/http"

	"github.com/golang/snappy"
	"github.com/prometheus/prometheus/prompb"
	"github.com/prometheus/prometheus/tsdb/chunkenc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

const (
	// streamedContentType is the media type of STREAMED_XOR_CHUNKS answers.
	streamedContentType = "application/x-streamed-protobuf"
	// maxFrameBytes bounds one streamed frame; Prometheus cuts frames at 1 MiB
	// of chunks, so anything far larger is a corrupt stream.
	maxFrameBytes = 64 << 20
	// samplesPerChunk is how many samples go into a chunk built from a
	// SAMPLES answer, as Prometheus cuts its own chunks.
	samplesPerChunk = 120
)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// ReadStream yields the series of one remote-read query as chunked series,
// whichever response type Prometheus chose. Close it when done.
type ReadStream struct {
	body     io.ReadCloser
	streamed bool
	br       *bufio.Reader
	buf      []byte
	pending  []*prompb.ChunkedSeries
	// Frames counts the frames of a streamed answer (1 for SAMPLES).
	Frames int
}

// Streamed reports whether Prometheus answered with STREAMED_XOR_CHUNKS.
func (r *ReadStream) Streamed() bool { return r.streamed }

// RemoteRead sends one query to /api/v1/read, preferring STREAMED_XOR_CHUNKS
// so the answer can be forwarded frame by frame, and accepting SAMPLES from a
// Prometheus that can't stream.
func (c *Client) RemoteRead(ctx context.Context, q *prompb.Query, types ...prompb.ReadRequest_ResponseType) (*ReadStream, error) {
	if len(types) == 0 {
		types = []prompb.ReadRequest_ResponseType{prompb.ReadRequest_STREAMED_XOR_CHUNKS, prompb.ReadRequest_SAMPLES}
	}
	rr := &prompb.ReadRequest{Queries: []*prompb.Query{q}, AcceptedResponseTypes: types}
	pb, err := rr.Marshal()
	if err != nil {
		return nil, status.Errorf(codes.Internal, "encode remote read request: %v", err)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, c.endpoint("/api/v1/read", nil).String(), bytes.NewReader(snappy.Encode(nil, pb)))
	if err != nil {
		return nil, status.Errorf(codes.Internal, "build remote read request: %v", err)
	}
	req.Header.Set("Content-Encoding", "snappy")
	req.Header.Set("Content-Type", "application/x-protobuf")
	req.Header.Set("X-Prometheus-Remote-Read-Version", "0.1.0")
	resp, err := c.do(req, "remote read")
	if err != nil {
		return nil, err
	}
	mt, _, _ := mime.ParseMediaType(resp.Header.Get("Content-Type"))
	s := &ReadStream{body: resp.Body}
	if mt == streamedContentType {
		s.streamed = true
		s.br = bufio.NewReaderSize(resp.Body, 64<<10)
		return s, nil
	}
	// SAMPLES: one snappy-compressed ReadResponse.
	defer func() { _ = resp.Body.Close() }()
	comp, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, transportError(ctx, "read remote read answer", err)
	}
	raw, err := snappy.Decode(nil, comp)
	if err != nil {
		return nil, status.Errorf(codes.Internal, "decompress remote read answer: %v", err)
	}
	var res prompb.ReadResponse
	if err := res.Unmarshal(raw); err != nil {
		return nil, status.Errorf(codes.Internal, "decode remote read answer: %v", err)
	}
	s.Frames = 1
	for _, qr := range res.Results {
		for _, ts := range qr.Timeseries {
			cs, err := samplesToChunks(ts)
			if err != nil {
				return nil, err
			}
			s.pending = append(s.pending, cs)
		}
	}
	return s, nil
}

// Next returns the next series, or io.EOF after the last one.
func (r *ReadStream) Next() (*prompb.ChunkedSeries, error) {
	for len(r.pending) == 0 {
		if !r.streamed {
			return nil, io.EOF
		}
		frame, err := r.nextFrame()
		if err != nil {
			return nil, err
		}
		var cr prompb.ChunkedReadResponse
		if err := cr.Unmarshal(frame); err != nil {
			return nil, status.Errorf(codes.Internal, "decode remote read frame: %v", err)
		}
		r.Frames++
		r.pending = cr.ChunkedSeries
	}
	s := r.pending[0]
	r.pending[0] = nil
	r.pending = r.pending[1:]
	return s, nil
}

// nextFrame reads one frame: uvarint length, big-endian CRC32 (Castagnoli)
// of the data, data.
func (r *ReadStream) nextFrame() ([]byte, error) {
	size, err := binary.ReadUvarint(r.br)
	if err != nil {
		if errors.Is(err, io.EOF) {
			return nil, io.EOF
		}
		return nil, status.Errorf(codes.Unavailable, "read remote read frame: %v", err)
	}
	if size > maxFrameBytes {
		return nil, status.Errorf(codes.ResourceExhausted, "remote read frame of %d bytes exceeds %d", size, maxFrameBytes)
	}
	var sum [4]byte
	if _, err := io.ReadFull(r.br, sum[:]); err != nil {
		return nil, status.Errorf(codes.Unavailable, "read remote read frame checksum: %v", err)
	}
	if cap(r.buf) < int(size) {
		r.buf = make([]byte, size)
	}
	r.buf = r.buf[:size]
	if _, err := io.ReadFull(r.br, r.buf); err != nil {
		return nil, status.Errorf(codes.Unavailable, "read remote read frame: %v", err)
	}
	if crc32.Checksum(r.buf, castagnoli) != binary.BigEndian.Uint32(sum[:]) {
		return nil, status.Error(codes.DataLoss, "remote read frame checksum mismatch")
	}
	return r.buf, nil
}

// Close releases the connection.
func (r *ReadStream) Close() error {
	// Drain a little so the connection can be reused when the caller stopped
	// early; a long remainder is cheaper to drop with the connection.
	_, _ = io.CopyN(io.Discard, r.body, 64<<10)
	return r.body.Close()
}

// samplesToChunks encodes the float samples of a SAMPLES answer into XOR
// chunks so that both answer types leave the sidecar the same way.
func samplesToChunks(ts *prompb.TimeSeries) (*prompb.ChunkedSeries, error) {
	if len(ts.Histograms) > 0 {
		return nil, status.Error(codes.Unimplemented, "native histograms need a Prometheus that answers remote read with STREAMED_XOR_CHUNKS")
	}
	cs := &prompb.ChunkedSeries{Labels: ts.Labels}
	for i := 0; i < len(ts.Samples); i += samplesPerChunk {
		end := min(i+samplesPerChunk, len(ts.Samples))
		c := chunkenc.NewXORChunk()
		app, err := c.Appender()
		if err != nil {
			return nil, status.Errorf(codes.Internal, "new XOR appender: %v", err)
		}
		for _, s := range ts.Samples[i:end] {
			app.Append(0, s.Timestamp, s.Value)
		}
		cs.Chunks = append(cs.Chunks, prompb.Chunk{
			MinTimeMs: ts.Samples[i].Timestamp,
			MaxTimeMs: ts.Samples[end-1].Timestamp,
			Type:      prompb.Chunk_XOR,
			Data:      c.Bytes(),
		})
	}
	return cs, nil
}

// String names the answer type, for logs.
func (r *ReadStream) String() string {
	if r.streamed {
		return fmt.Sprintf("streamed(%d frames)", r.Frames)
	}
	return "samples"
}
