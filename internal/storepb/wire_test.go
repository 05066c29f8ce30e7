package storepb

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"testing"

	"github.com/prometheus/prometheus/model/labels"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/protobuf/proto"
)

type wireChunk struct {
	minT, maxT int64
	enc        Chunk_Encoding
	data       []byte
	hash       uint64
}

type wireSeries struct {
	lset   labels.Labels
	chunks []wireChunk
}

func (s wireSeries) encode() []byte {
	var body []byte
	body = AppendLabels(body, s.lset)
	for _, c := range s.chunks {
		body = AppendSeriesChunk(body, c.minT, c.maxT, c.enc, c.data, c.hash)
	}
	return body
}

func (s wireSeries) message() *Series {
	out := &Series{Labels: LabelsToProto(s.lset)}
	for _, c := range s.chunks {
		out.Chunks = append(out.Chunks, &AggrChunk{MinTime: c.minT, MaxTime: c.maxT, Raw: &Chunk{Type: c.enc, Data: c.data, Hash: c.hash}})
	}
	return out
}

var wireCases = []wireSeries{
	{lset: labels.FromStrings("__name__", "up", "job", "a")},
	{lset: labels.FromStrings("a", "", "b", "2"), chunks: []wireChunk{{minT: 0, maxT: 0, enc: Chunk_XOR, data: nil}}},
	{lset: labels.FromStrings("x", "y"), chunks: []wireChunk{
		{minT: -5000, maxT: -1, enc: Chunk_XOR, data: []byte{0, 1, 2}, hash: 0},
		{minT: 1_700_000_000_000, maxT: 1_700_000_120_000, enc: Chunk_HISTOGRAM, data: bytes.Repeat([]byte{7}, 300), hash: 1<<64 - 1},
		{minT: 1, maxT: 2, enc: Chunk_FLOAT_HISTOGRAM, data: []byte{9}, hash: 42},
	}},
}

// TestWireMatchesProto checks that hand-encoded series are byte for byte
// what proto.Marshal writes, alone and in a batch.
func TestWireMatchesProto(t *testing.T) {
	var batch []byte
	var want SeriesBatch
	for i, s := range wireCases {
		body := s.encode()
		got := AppendSeriesResponse(nil, len(body))
		got = append(got, body...)
		exp, err := proto.MarshalOptions{Deterministic: true}.Marshal(NewSeriesResponse(s.message()))
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got, exp) {
			t.Errorf("case %d: got\n%x\nwant\n%x", i, got, exp)
		}
		batch = AppendBatchSeries(batch, len(body))
		batch = append(batch, body...)
		want.Series = append(want.Series, s.message())
	}
	// A downsampled chunk with three aggregates.
	subs := []SubChunk{{Aggr: Aggr_COUNT, Data: []byte{1, 2}, Hash: 7}, {Aggr: Aggr_SUM, Data: []byte{3}}, {Aggr: Aggr_COUNTER, Enc: Chunk_XOR, Data: bytes.Repeat([]byte{5}, 200), Hash: 1 << 63}}
	aggr := AppendSeriesAggrChunk(nil, -7, 1_700_000_000_000, subs)
	exp, err := proto.MarshalOptions{Deterministic: true}.Marshal(&Series{Chunks: []*AggrChunk{{MinTime: -7, MaxTime: 1_700_000_000_000,
		Count: &Chunk{Data: []byte{1, 2}, Hash: 7}, Sum: &Chunk{Data: []byte{3}}, Counter: &Chunk{Data: bytes.Repeat([]byte{5}, 200), Hash: 1 << 63}}}})
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(aggr, exp) {
		t.Errorf("aggregate chunk: got\n%x\nwant\n%x", aggr, exp)
	}
	got := AppendBatchResponse(nil, batch)
	exp, err = proto.MarshalOptions{Deterministic: true}.Marshal(&SeriesResponse{Result: &SeriesResponse_Batch{Batch: &want}})
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, exp) {
		t.Errorf("batch: got\n%x\nwant\n%x", got, exp)
	}
	for i, s := range wireCases {
		if n := LabelsSize(s.lset); n != len(AppendLabels(nil, s.lset)) {
			t.Errorf("case %d: LabelsSize %d, appended %d", i, n, len(AppendLabels(nil, s.lset)))
		}
	}
}

// rawServer streams the wire cases as RawMessages, then one typed message.
type rawServer struct{ UnimplementedStoreServer }

func (rawServer) Series(_ *SeriesRequest, srv Store_SeriesServer) error {
	for _, s := range wireCases {
		// Split the message to check that parts are sent back to back.
		body := s.encode()
		msg := AppendSeriesResponse(nil, len(body))
		half := len(body) / 2
		if err := srv.SendMsg(RawMessage{msg, body[:half], nil, body[half:]}); err != nil {
			return err
		}
	}
	return srv.Send(NewWarnSeriesResponse("done"))
}

// TestServerCodec sends RawMessages and typed messages over a real gRPC
// connection and checks what a standard client decodes.
func TestServerCodec(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := grpc.NewServer(ServerCodec())
	RegisterStoreServer(srv, rawServer{})
	go func() { _ = srv.Serve(ln) }()
	defer srv.Stop()
	conn, err := grpc.NewClient(ln.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	stream, err := NewStoreClient(conn).Series(context.Background(), &SeriesRequest{})
	if err != nil {
		t.Fatal(err)
	}
	var got []*SeriesResponse
	for {
		r, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, r)
	}
	if len(got) != len(wireCases)+1 {
		t.Fatalf("got %d responses, want %d", len(got), len(wireCases)+1)
	}
	for i, s := range wireCases {
		if !proto.Equal(got[i].GetSeries(), s.message()) {
			t.Errorf("response %d: got %v, want %v", i, got[i].GetSeries(), s.message())
		}
	}
	if w := got[len(wireCases)].GetWarning(); w != "done" {
		t.Errorf("last response: warning %q, want done", w)
	}
}
