package sidecar_test

import (
	"context"
	"errors"
	"io"
	"os"
	"path/filepath"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/protobuf/proto"

	"github.com/stevedore-dev/stevedore/internal/block"
	"github.com/stevedore-dev/stevedore/internal/sidecar"
	"github.com/stevedore-dev/stevedore/internal/storepb"
	"github.com/stevedore-dev/stevedore/internal/testserver"
)

// startThanosSidecar runs the reference `thanos sidecar` next to prom and
// returns its gRPC address.
func startThanosSidecar(b testing.TB, prom *testserver.Prometheus, objstoreConfig []byte) string {
	b.Helper()
	httpAddr, grpcAddr := testserver.Addr(testserver.FreePort(b)), testserver.Addr(testserver.FreePort(b))
	args := []string{"sidecar",
		"--prometheus.url=" + prom.URL,
		"--tsdb.path=" + prom.DataDir,
		"--http-address=" + httpAddr,
		"--grpc-address=" + grpcAddr,
	}
	if objstoreConfig != nil {
		args = append(args, "--objstore.config="+string(objstoreConfig))
	}
	p := testserver.Start(b, "thanos-sidecar", testserver.Binary(b, testserver.EnvThanos), args)
	p.WaitHTTP(b, "http://"+httpAddr+"/-/ready", 60*time.Second)
	return grpcAddr
}

// BenchmarkSeriesProxy compares Series latency through our sidecar and the
// Thanos sidecar on the same Prometheus: all series of one metric over three
// 2h blocks, chunks streamed to a gRPC client that discards them.
//
//	go test -run '^$' -bench SeriesProxy -benchtime 20x ./internal/sidecar/
func BenchmarkSeriesProxy(b *testing.B) {
	dir := b.TempDir()
	base := time.Now().Truncate(2 * time.Hour).Add(-8 * time.Hour)
	genBlocks(b, dir, base, 3, 500)
	prom := testserver.StartPrometheus(b, testserver.PrometheusOptions{Version: benchPromVersion(), DataDir: dir, ExternalLabels: testExtLabels})
	ours := startSidecar(b, sidecar.Config{PrometheusURL: mustURL(b, prom.URL)})
	theirs := startThanosSidecar(b, prom, nil)
	req := &storepb.SeriesRequest{
		MinTime:  base.UnixMilli(),
		MaxTime:  base.Add(6 * time.Hour).UnixMilli(),
		Matchers: []*storepb.LabelMatcher{{Type: storepb.LabelMatcher_EQ, Name: "__name__", Value: "test_metric"}},
	}
	for _, impl := range []struct {
		name, addr string
		batch      int64
	}{
		{"stevedore", ours.GRPCAddr, 0}, {"thanos", theirs, 0},
		// Queriers since Thanos v0.38 may ask for batched responses; the
		// Thanos sidecar ignores the field.
		{"stevedore-batch64", ours.GRPCAddr, 64}, {"thanos-batch64", theirs, 64},
	} {
		req := proto.CloneOf(req)
		req.ResponseBatchSize = impl.batch
		b.Run(impl.name, func(b *testing.B) {
			conn, err := grpc.NewClient(impl.addr, grpc.WithTransportCredentials(insecure.NewCredentials()), grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(64<<20)))
			if err != nil {
				b.Fatal(err)
			}
			defer func() { _ = conn.Close() }()
			c := storepb.NewStoreClient(conn)
			// One untimed call warms Prometheus's page cache and the
			// connections, so the order of the sub-benchmarks doesn't matter.
			readSeries(b, c, req)
			series := 0
			for b.Loop() {
				series = readSeries(b, c, req)
			}
			b.ReportMetric(float64(series), "series/op")
		})
	}
}

// BenchmarkUploadLatency measures how long a block takes from appearing in
// the TSDB directory (renamed into place, as Prometheus does) to its
// meta.json being in the bucket, for our sidecar (file-system watch) and the
// Thanos sidecar (30 s scan).
//
//	go test -run '^$' -bench UploadLatency -benchtime 3x ./internal/sidecar/
func BenchmarkUploadLatency(b *testing.B) {
	mio := testserver.StartMinIO(b)
	for _, impl := range []string{"stevedore", "thanos"} {
		b.Run(impl, func(b *testing.B) {
			bktName := "bench-" + impl
			bkt := mio.Bucket(b, bktName)
			dir := b.TempDir()
			prom := testserver.StartPrometheus(b, testserver.PrometheusOptions{Version: benchPromVersion(), DataDir: dir, ExternalLabels: testExtLabels})
			if impl == "stevedore" {
				startSidecar(b, sidecar.Config{PrometheusURL: mustURL(b, prom.URL), TSDBPath: dir, ObjstoreConfig: mio.ObjstoreConfig(bktName)})
			} else {
				startThanosSidecar(b, prom, mio.ObjstoreConfig(bktName))
			}
			staging := b.TempDir()
			base := time.Now().Truncate(2 * time.Hour).Add(-1000 * time.Hour)
			var total time.Duration
			i := 0
			for b.Loop() {
				b.StopTimer()
				id := genBlocks(b, staging, base.Add(time.Duration(i)*2*time.Hour), 1, 200)[0]
				i++
				b.StartTimer()
				start := time.Now()
				if err := os.Rename(filepath.Join(staging, id.String()), filepath.Join(dir, id.String())); err != nil {
					b.Fatal(err)
				}
				for {
					ok, err := bkt.Exists(context.Background(), block.MetaObject(id))
					if err != nil {
						b.Fatal(err)
					}
					if ok {
						break
					}
					if time.Since(start) > 2*time.Minute {
						b.Fatalf("block %s not uploaded after 2m", id)
					}
					time.Sleep(5 * time.Millisecond)
				}
				total += time.Since(start)
			}
			b.ReportMetric(float64(total.Milliseconds())/float64(i), "ms/block")
		})
	}
}

// benchPromVersion is Prometheus 3 unless STEVEDORE_BENCH_PROMETHEUS=2.
func benchPromVersion() testserver.PrometheusVersion {
	if os.Getenv("STEVEDORE_BENCH_PROMETHEUS") == "2" {
		return testserver.Prometheus2
	}
	return testserver.Prometheus3
}

// readSeries runs one Series call to the end and returns how many series it got.
func readSeries(b *testing.B, c storepb.StoreClient, req *storepb.SeriesRequest) int {
	stream, err := c.Series(context.Background(), req)
	if err != nil {
		b.Fatal(err)
	}
	n := 0
	for {
		r, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			return n
		}
		if err != nil {
			b.Fatal(err)
		}
		n += len(r.GetBatch().GetSeries())
		if r.GetSeries() != nil {
			n++
		}
	}
}
