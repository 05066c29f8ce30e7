// Command benchtool supports hack/bench-store.sh: `gen` writes a benchmark
// bucket of TSDB blocks into an S3 (MinIO) bucket, `series` replays a corpus
// of StoreAPI Series calls against a store and prints latency percentiles.
// It is a tool for the benchmark script, not part of the agent.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync/atomic"
	"time"

	"github.com/go-kit/log"
	"github.com/minio/minio-go/v7"
	"github.com/minio/minio-go/v7/pkg/credentials"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/thanos-io/objstore/client"
	"golang.org/x/sync/errgroup"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/stevedore-dev/stevedore/internal/block"
	"github.com/stevedore-dev/stevedore/internal/storepb"
	"github.com/stevedore-dev/stevedore/internal/testutil/blockgen"
)

func main() {
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, "usage: benchtool gen|series [flags]")
		os.Exit(2)
	}
	var err error
	switch os.Args[1] {
	case "gen":
		err = gen(os.Args[2:])
	case "series":
		err = series(os.Args[2:])
	default:
		err = fmt.Errorf("unknown command %q", os.Args[1])
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "benchtool:", err)
		os.Exit(1)
	}
}

func gen(args []string) error {
	fs := flag.NewFlagSet("gen", flag.ContinueOnError)
	endpoint := fs.String("endpoint", "", "MinIO host:port")
	access := fs.String("access-key", "", "")
	secret := fs.String("secret-key", "", "")
	bucket := fs.String("bucket", "bench", "")
	blocks := fs.Int("blocks", 6, "number of 2h blocks (per cluster)")
	seriesN := fs.Int("series", 5000, "float series per metric per block")
	hist := fs.Int("histograms", 200, "native histogram series per block")
	dir := fs.String("dir", "", "scratch dir for blocks")
	step := fs.Duration("step", 30*time.Second, "interval between samples")
	parallel := fs.Int("parallel", runtime.NumCPU(), "blocks written at once")
	if err := fs.Parse(args); err != nil {
		return err
	}
	ctx := context.Background()
	mc, err := minio.New(*endpoint, &minio.Options{Creds: credentials.NewStaticV4(*access, *secret, "")})
	if err != nil {
		return err
	}
	if err := mc.MakeBucket(ctx, *bucket, minio.MakeBucketOptions{}); err != nil {
		return fmt.Errorf("make bucket: %w", err)
	}
	cfg := fmt.Sprintf("type: S3\nconfig:\n  bucket: %q\n  endpoint: %q\n  access_key: %q\n  secret_key: %q\n  insecure: true\n", *bucket, *endpoint, *access, *secret)
	bkt, err := client.NewBucket(log.NewNopLogger(), []byte(cfg), "bench", nil)
	if err != nil {
		return err
	}
	hour := int64(time.Hour / time.Millisecond)
	end := time.Now().UnixMilli() / (2 * hour) * (2 * hour)
	start := end - int64(*blocks)*2*hour
	// Blocks are independent and appending is single-threaded per block:
	// writing several at once makes large buckets quicker to generate.
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(max(*parallel, 1))
	var done atomic.Int64
	for i := 0; i < *blocks; i++ {
		for c, cluster := range []string{"eu", "us"} {
			g.Go(func() error {
				id, err := blockgen.Write(gctx, *dir, blockgen.Spec{
					MinTime: start + int64(i)*2*hour, MaxTime: start + int64(i+1)*2*hour, Step: step.Milliseconds(),
					Series: *seriesN, Metrics: []string{"http_requests_total", "cpu_seconds_total"}, HistogramSeries: *hist, Seed: int64(i*2 + c),
				})
				if err != nil {
					return err
				}
				if _, err := blockgen.SetThanosMeta(*dir, id, map[string]string{"cluster": cluster}, block.SourceSidecar); err != nil {
					return err
				}
				if err := blockgen.Upload(gctx, bkt, *dir, id); err != nil {
					return err
				}
				_ = os.RemoveAll(filepath.Join(*dir, id.String()))
				fmt.Fprintf(os.Stderr, "uploaded block %d/%d %s\n", done.Add(1), *blocks*2, id)
				return nil
			})
		}
	}
	if err := g.Wait(); err != nil {
		return err
	}
	fmt.Println(start, end)
	return nil
}

type query struct {
	name     string
	matchers []*labels.Matcher
	hours    int64
	heavy    bool
}

func corpus() []query {
	m := func(t labels.MatchType, n, v string) *labels.Matcher { return labels.MustNewMatcher(t, n, v) }
	return []query{
		{"one series 1h", []*labels.Matcher{m(labels.MatchEqual, "__name__", "http_requests_total"), m(labels.MatchEqual, "instance", "instance-0042")}, 1, false},
		{"job regex 2h", []*labels.Matcher{m(labels.MatchEqual, "__name__", "cpu_seconds_total"), m(labels.MatchRegexp, "job", "job-1|job-2"), m(labels.MatchEqual, "zone", "a")}, 2, false},
		{"instance prefix 6h", []*labels.Matcher{m(labels.MatchEqual, "__name__", "http_requests_total"), m(labels.MatchRegexp, "instance", "instance-00[0-4].")}, 6, false},
		{"metric all range (sum by job rate)", []*labels.Matcher{m(labels.MatchEqual, "__name__", "http_requests_total")}, 0, true},
		{"histograms all range (histogram_quantile)", []*labels.Matcher{m(labels.MatchEqual, "__name__", "test_histogram")}, 0, true},
		{"everything (count({__name__=~\".+\"}))", []*labels.Matcher{m(labels.MatchRegexp, "__name__", ".+")}, 0, true},
	}
}

func series(args []string) error {
	fs := flag.NewFlagSet("series", flag.ContinueOnError)
	addr := fs.String("addr", "", "StoreAPI gRPC address")
	runs := fs.Int("runs", 5, "runs per heavy query")
	smallRuns := fs.Int("small-runs", 20, "runs per small query: a few milliseconds need more samples")
	mint := fs.Int64("min-time", 0, "start of the data (ms)")
	maxt := fs.Int64("max-time", 0, "end of the data (ms)")
	heavy := fs.Bool("heavy", true, "include heavy queries")
	only := fs.String("only", "", "run only the queries whose name contains this")
	if err := fs.Parse(args); err != nil {
		return err
	}
	conn, err := grpc.NewClient(*addr, grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(1<<30)))
	if err != nil {
		return err
	}
	defer conn.Close()
	c := storepb.NewStoreClient(conn)
	var all []time.Duration
	for _, q := range corpus() {
		if (q.heavy && !*heavy) || !strings.Contains(q.name, *only) {
			continue
		}
		from := *mint
		if q.hours > 0 {
			from = *maxt - q.hours*int64(time.Hour/time.Millisecond)
		}
		var lat []time.Duration
		var nSeries, nChunks, nBytes int
		var failed error
		n := *runs
		if !q.heavy {
			n = max(n, *smallRuns)
		}
		for range n {
			start := time.Now()
			nSeries, nChunks, nBytes, err = runSeries(c, &storepb.SeriesRequest{MinTime: from, MaxTime: *maxt, Matchers: storepb.MatchersToProto(q.matchers)})
			if err != nil {
				failed = err
				break
			}
			lat = append(lat, time.Since(start))
		}
		if failed != nil {
			fmt.Printf("%-45s FAILED: %.120s\n", q.name, failed)
			continue
		}
		all = append(all, lat...)
		fmt.Printf("%-45s p50=%-9s p99=%-9s series=%d chunks=%d bytes=%d\n", q.name, pct(lat, 0.5), pct(lat, 0.99), nSeries, nChunks, nBytes)
	}
	fmt.Printf("%-45s p50=%-9s p99=%-9s\n", "ALL", pct(all, 0.5), pct(all, 0.99))
	return nil
}

func runSeries(c storepb.StoreClient, req *storepb.SeriesRequest) (nSeries, nChunks, nBytes int, err error) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	stream, err := c.Series(ctx, req)
	if err != nil {
		return 0, 0, 0, err
	}
	for {
		resp, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			return nSeries, nChunks, nBytes, nil
		}
		if err != nil {
			return 0, 0, 0, err
		}
		list := []*storepb.Series{resp.GetSeries()}
		if b := resp.GetBatch(); b != nil {
			list = b.GetSeries()
		}
		for _, s := range list {
			if s == nil {
				continue
			}
			nSeries++
			nChunks += len(s.GetChunks())
			for _, ch := range s.GetChunks() {
				nBytes += len(ch.GetRaw().GetData())
			}
		}
	}
}

func pct(d []time.Duration, p float64) string {
	if len(d) == 0 {
		return "-"
	}
	s := slices.Clone(d)
	slices.Sort(s)
	// Nearest rank: with few runs p99 is the slowest, not the median.
	i := max(int(math.Ceil(p*float64(len(s))))-1, 0)
	if s[i] < time.Second {
		return s[i].Round(100 * time.Microsecond).String()
	}
	return s[i].Round(time.Millisecond).String()
}
