package promclient

import (
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"hash/crc32"
	"io"
	"net/http"
	"net/url"
	"testing"
	"time"

	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/prompb"
	"github.com/prometheus/prometheus/tsdb/chunkenc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/stevedore-dev/stevedore/internal/testserver"
)

func TestParseExternalLabels(t *testing.T) {
	for _, tc := range []struct {
		doc     string
		want    labels.Labels
		wantErr bool
	}{
		{doc: "global:\n  external_labels:\n    cluster: a\n    replica: \"1\"\n", want: labels.FromStrings("cluster", "a", "replica", "1")},
		{doc: "global:\n  scrape_interval: 15s\n", want: labels.EmptyLabels()},
		{doc: "scrape_configs: []\n", want: labels.EmptyLabels()},
		// Fields unknown to us (newer Prometheus) do not matter.
		{doc: "global:\n  new_field: {x: 1}\n  external_labels: {c: d}\nfuture: true\n", want: labels.FromStrings("c", "d")},
		{doc: "global: [not, a, map]", wantErr: true},
	} {
		got, err := ParseExternalLabels([]byte(tc.doc))
		if (err != nil) != tc.wantErr {
			t.Errorf("ParseExternalLabels(%q) error %v, want error %v", tc.doc, err, tc.wantErr)
			continue
		}
		if !tc.wantErr && !labels.Equal(got, tc.want) {
			t.Errorf("ParseExternalLabels(%q) = %v, want %v", tc.doc, got, tc.want)
		}
	}
}

func TestParseDuration(t *testing.T) {
	for _, tc := range []struct {
		in      string
		want    time.Duration
		wantErr bool
	}{
		{"2h", 2 * time.Hour, false},
		{"1d12h", 36 * time.Hour, false},
		{"90s", 90 * time.Second, false},
		{"500ms", 500 * time.Millisecond, false},
		{"1w", 7 * 24 * time.Hour, false},
		{"", 0, false},
		{"2", 0, true},
		{"h", 0, true},
		{"2x", 0, true},
	} {
		got, err := parseDuration(tc.in)
		if (err != nil) != tc.wantErr || got != tc.want {
			t.Errorf("parseDuration(%q) = %v, %v; want %v, error %v", tc.in, got, err, tc.want, tc.wantErr)
		}
	}
}

func TestFormatTime(t *testing.T) {
	for _, tc := range []struct {
		ms   int64
		want string
	}{
		{0, "0.000"},
		{1704164645123, "1704164645.123"},
		{-1 << 63, "-62135596800.000"},
		{1<<63 - 1, "253402300799.000"},
	} {
		if got := FormatTime(tc.ms); got != tc.want {
			t.Errorf("FormatTime(%d) = %s, want %s", tc.ms, got, tc.want)
		}
	}
}

func TestHTTPCode(t *testing.T) {
	for _, tc := range []struct {
		status int
		want   codes.Code
	}{
		{http.StatusBadRequest, codes.InvalidArgument},
		{http.StatusNotFound, codes.NotFound},
		{http.StatusUnprocessableEntity, codes.Internal},
		{http.StatusServiceUnavailable, codes.Unavailable},
		{http.StatusInternalServerError, codes.Internal},
		{http.StatusTeapot, codes.Internal},
	} {
		if got := httpCode(tc.status); got != tc.want {
			t.Errorf("httpCode(%d) = %s, want %s", tc.status, got, tc.want)
		}
	}
}

// frame encodes one streamed remote-read frame.
func frame(t *testing.T, r *prompb.ChunkedReadResponse, corrupt bool) []byte {
	t.Helper()
	b, err := r.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	var out []byte
	out = binary.AppendUvarint(out, uint64(len(b)))
	sum := crc32.Checksum(b, castagnoli)
	if corrupt {
		sum++
	}
	out = binary.BigEndian.AppendUint32(out, sum)
	return append(out, b...)
}

func TestReadStreamFrames(t *testing.T) {
	s1 := prompb.ChunkedSeries{Labels: []prompb.Label{{Name: "a", Value: "1"}}, Chunks: []prompb.Chunk{{MinTimeMs: 1, MaxTimeMs: 2, Type: prompb.Chunk_XOR, Data: []byte{1}}}}
	s2 := prompb.ChunkedSeries{Labels: []prompb.Label{{Name: "a", Value: "2"}}}
	for _, tc := range []struct {
		name    string
		body    []byte
		want    int
		wantErr codes.Code
	}{
		{name: "two frames", body: append(frame(t, &prompb.ChunkedReadResponse{ChunkedSeries: []*prompb.ChunkedSeries{&s1}}, false),
			frame(t, &prompb.ChunkedReadResponse{ChunkedSeries: []*prompb.ChunkedSeries{&s2}}, false)...), want: 2},
		{name: "empty", body: nil, want: 0},
		{name: "bad checksum", body: frame(t, &prompb.ChunkedReadResponse{ChunkedSeries: []*prompb.ChunkedSeries{&s1}}, true), wantErr: codes.DataLoss},
		{name: "truncated", body: frame(t, &prompb.ChunkedReadResponse{ChunkedSeries: []*prompb.ChunkedSeries{&s1}}, false)[:5], wantErr: codes.Unavailable},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rs := &ReadStream{streamed: true, br: bufio.NewReader(bytes.NewReader(tc.body)), body: io.NopCloser(nil)}
			n := 0
			for {
				_, err := rs.Next()
				if errors.Is(err, io.EOF) {
					break
				}
				if err != nil {
					if status.Code(err) != tc.wantErr {
						t.Fatalf("error %v, want code %s", err, tc.wantErr)
					}
					return
				}
				n++
			}
			if tc.wantErr != codes.OK || n != tc.want {
				t.Errorf("read %d series, want %d (error %s)", n, tc.want, tc.wantErr)
			}
		})
	}
}

func TestSamplesToChunks(t *testing.T) {
	ts := &prompb.TimeSeries{Labels: []prompb.Label{{Name: "a", Value: "b"}}}
	for i := range 250 {
		ts.Samples = append(ts.Samples, prompb.Sample{Timestamp: int64(i) * 1000, Value: float64(i)})
	}
	cs, err := samplesToChunks(ts)
	if err != nil {
		t.Fatal(err)
	}
	if len(cs.Chunks) != 3 {
		t.Fatalf("%d chunks, want 3", len(cs.Chunks))
	}
	n := 0
	for _, c := range cs.Chunks {
		xc, err := chunkenc.FromData(chunkenc.EncXOR, c.Data)
		if err != nil {
			t.Fatal(err)
		}
		it := xc.Iterator(nil)
		for it.Next() == chunkenc.ValFloat {
			ts, v := it.At()
			if ts != int64(n)*1000 || v != float64(n) {
				t.Fatalf("sample %d = %d/%v", n, ts, v)
			}
			n++
		}
	}
	if n != 250 {
		t.Errorf("decoded %d samples, want 250", n)
	}
}

// TestClientWithPrometheus checks the status endpoints, remote read in both
// answer types, and the error mapping against a real Prometheus.
func TestClientWithPrometheus(t *testing.T) {
	if testing.Short() {
		t.Skip("integration test with a real Prometheus")
	}
	prom := testserver.StartPrometheus(t, testserver.PrometheusOptions{Version: testserver.Prometheus2, ExternalLabels: map[string]string{"cluster": "x"}})
	u, _ := url.Parse(prom.URL)
	c := New(u, nil)
	ctx := context.Background()
	bi, err := c.BuildInfo(ctx)
	if err != nil || bi.Version == "" {
		t.Fatalf("build info %+v, %v", bi, err)
	}
	lset, err := c.ExternalLabels(ctx)
	if err != nil || lset.Get("cluster") != "x" {
		t.Fatalf("external labels %v, %v", lset, err)
	}
	f, err := c.Flags(ctx)
	if err != nil || f.TSDBMinDuration != 2*time.Hour || f.TSDBMaxDuration != 2*time.Hour {
		t.Fatalf("flags %+v, %v", f, err)
	}
	// Wait for the self-scrape, then read it back both ways.
	q := &prompb.Query{StartTimestampMs: 0, EndTimestampMs: time.Now().Add(time.Minute).UnixMilli(),
		Matchers: []*prompb.LabelMatcher{{Type: prompb.LabelMatcher_EQ, Name: "__name__", Value: "up"}}}
	for _, types := range [][]prompb.ReadRequest_ResponseType{{prompb.ReadRequest_STREAMED_XOR_CHUNKS}, {prompb.ReadRequest_SAMPLES}} {
		deadline := time.Now().Add(30 * time.Second)
		for {
			rs, err := c.RemoteRead(ctx, q, types...)
			if err != nil {
				t.Fatalf("remote read %v: %v", types, err)
			}
			s, err := rs.Next()
			_ = rs.Close()
			if err == nil {
				if rs.Streamed() != (types[0] == prompb.ReadRequest_STREAMED_XOR_CHUNKS) || len(s.Chunks) == 0 {
					t.Errorf("%v: streamed %v, %d chunks", types, rs.Streamed(), len(s.Chunks))
				}
				break
			}
			if !errors.Is(err, io.EOF) || time.Now().After(deadline) {
				t.Fatalf("remote read %v: %v", types, err)
			}
			time.Sleep(500 * time.Millisecond)
		}
	}
	// A bad request maps to InvalidArgument.
	_, err = c.Exemplars(ctx, "up{", 0, 1000)
	if status.Code(err) != codes.InvalidArgument {
		t.Errorf("bad query: %v, want InvalidArgument", err)
	}
	// A dead Prometheus is Unavailable.
	dead, _ := url.Parse("http://" + testserver.Addr(testserver.FreePort(t)))
	if _, err := New(dead, nil).BuildInfo(ctx); status.Code(err) != codes.Unavailable {
		t.Errorf("dead Prometheus: %v, want Unavailable", err)
	}
}
