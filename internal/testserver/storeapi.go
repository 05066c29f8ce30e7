package testserver

import (
	"context"
	"errors"
	"io"
	"testing"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/stevedore-dev/stevedore/internal/storepb"
)

// SeriesLabels calls Series on the StoreAPI at addr and returns the labels
// of the series streamed back, in stream order, single or batched.
func SeriesLabels(t testing.TB, addr string, req *storepb.SeriesRequest) []string {
	t.Helper()
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()), grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(1<<30)))
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = conn.Close() }()
	stream, err := storepb.NewStoreClient(conn).Series(context.Background(), req)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for {
		r, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			return out
		}
		if err != nil {
			t.Fatalf("series from %s: %v", addr, err)
		}
		list := []*storepb.Series{r.GetSeries()}
		if b := r.GetBatch(); b != nil {
			list = b.GetSeries()
		}
		for _, s := range list {
			if s != nil {
				out = append(out, storepb.LabelsFromProto(s.GetLabels()).String())
			}
		}
	}
}
