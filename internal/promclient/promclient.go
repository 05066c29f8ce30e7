// Package promclient talks to the HTTP API of one Prometheus server: status
// endpoints, label and series queries, rules, targets, metadata, exemplars and
// remote read. Errors carry gRPC status codes so that StoreAPI handlers can
// return them unchanged.
package promclient

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"net"
	"net/http"
	"net/url"
	"path"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/prometheus/prometheus/model/labels"
	"go.yaml.in/yaml/v3"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// UserAgent identifies the sidecar to Prometheus.
const UserAgent = "stevedore-sidecar"

// maxErrorBody bounds how much of an error response ends up in a message.
const maxErrorBody = 4 << 10

// ErrFlagsNotFound is returned by Flags when Prometheus has no flags endpoint
// (older than 2.2): the caller warns instead of failing.
var ErrFlagsNotFound = errors.New("prometheus has no /api/v1/status/flags endpoint")

// Client queries the Prometheus at one base URL.
type Client struct {
	base *url.URL
	hc   *http.Client
}

// New returns a client for the Prometheus at base, using hc (or a default
// client when nil).
func New(base *url.URL, hc *http.Client) *Client {
	if hc == nil {
		hc = &http.Client{Transport: http.DefaultTransport}
	}
	return &Client{base: base, hc: hc}
}

// URL is the base URL of the Prometheus.
func (c *Client) URL() *url.URL { return c.base }

// endpoint resolves p (e.g. /api/v1/labels) below the base URL, keeping a
// path prefix such as a --web.route-prefix.
func (c *Client) endpoint(p string, q url.Values) *url.URL {
	u := *c.base
	u.Path = path.Join("/", c.base.Path, p)
	u.RawQuery = q.Encode()
	return &u
}

// statusToCode maps Prometheus HTTP answers to gRPC codes, as Thanos does, so
// that a querier sees the same error class it would see from a Thanos sidecar.
var statusToCode = map[int]codes.Code{
	http.StatusBadRequest:          codes.InvalidArgument,
	http.StatusNotFound:            codes.NotFound,
	http.StatusUnprocessableEntity: codes.Internal,
	http.StatusServiceUnavailable:  codes.Unavailable,
	http.StatusInternalServerError: codes.Internal,
}

// httpCode is the gRPC code for an HTTP status.
func httpCode(s int) codes.Code {
	if c, ok := statusToCode[s]; ok {
		return c
	}
	return codes.Internal
}

// transportError turns a failed round trip into a gRPC status: a dead or
// unreachable Prometheus is Unavailable, a cancelled request keeps its
// context code.
func transportError(ctx context.Context, what string, err error) error {
	switch {
	case errors.Is(err, context.Canceled) || ctx.Err() == context.Canceled:
		return status.Errorf(codes.Canceled, "%s: %v", what, err)
	case errors.Is(err, context.DeadlineExceeded) || ctx.Err() == context.DeadlineExceeded:
		return status.Errorf(codes.DeadlineExceeded, "%s: %v", what, err)
	}
	var ne net.Error
	if errors.As(err, &ne) || errors.Is(err, io.ErrUnexpectedEOF) {
		return status.Errorf(codes.Unavailable, "%s: %v", what, err)
	}
	return status.Errorf(codes.Unavailable, "%s: %v", what, err)
}

// do sends req and returns the response when it is 2xx; otherwise a gRPC
// status error with the mapped code and the start of the body.
func (c *Client) do(req *http.Request, what string) (*http.Response, error) {
	req.Header.Set("User-Agent", UserAgent)
	resp, err := c.hc.Do(req)
	if err != nil {
		return nil, transportError(req.Context(), what, err)
	}
	if resp.StatusCode/100 == 2 {
		return resp, nil
	}
	defer func() { _ = resp.Body.Close() }()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, maxErrorBody))
	msg := strings.TrimSpace(string(body))
	// The API answers errors as {"status":"error","error":"..."}; use the
	// message when there is one.
	var apiErr struct {
		Error string `json:"error"`
	}
	if json.Unmarshal(body, &apiErr) == nil && apiErr.Error != "" {
		msg = apiErr.Error
	}
	return nil, &HTTPError{Code: resp.StatusCode, err: status.Errorf(httpCode(resp.StatusCode), "%s: HTTP %d: %s", what, resp.StatusCode, msg)}
}

// HTTPError is a non-2xx answer; it unwraps to a gRPC status error.
type HTTPError struct {
	Code int
	err  error
}

func (e *HTTPError) Error() string { return e.err.Error() }

// GRPCStatus lets status.FromError see through the wrapper.
func (e *HTTPError) GRPCStatus() *status.Status { s, _ := status.FromError(e.err); return s }

// Unwrap returns the gRPC status error.
func (e *HTTPError) Unwrap() error { return e.err }

// getAPI GETs an /api/v1 endpoint and decodes its data field into out.
func (c *Client) getAPI(ctx context.Context, p string, q url.Values, out any) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, c.endpoint(p, q).String(), nil)
	if err != nil {
		return status.Errorf(codes.Internal, "build request for %s: %v", p, err)
	}
	return c.decodeAPI(req, p, out)
}

// postAPI POSTs a form to an /api/v1 endpoint, which keeps long matcher lists
// out of the URL.
func (c *Client) postAPI(ctx context.Context, p string, q url.Values, out any) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, c.endpoint(p, nil).String(), strings.NewReader(q.Encode()))
	if err != nil {
		return status.Errorf(codes.Internal, "build request for %s: %v", p, err)
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	return c.decodeAPI(req, p, out)
}

func (c *Client) decodeAPI(req *http.Request, p string, out any) error {
	resp, err := c.do(req, "query "+p)
	if err != nil {
		return err
	}
	defer func() { _ = resp.Body.Close() }()
	if resp.StatusCode == http.StatusNoContent {
		return nil
	}
	var env struct {
		Status string          `json:"status"`
		Error  string          `json:"error"`
		Data   json.RawMessage `json:"data"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&env); err != nil {
		return transportError(req.Context(), "decode answer of "+p, err)
	}
	if env.Status != "success" {
		return status.Errorf(httpCode(resp.StatusCode), "query %s: status %q: %s", p, env.Status, env.Error)
	}
	if out == nil {
		return nil
	}
	if err := json.Unmarshal(env.Data, out); err != nil {
		return status.Errorf(codes.Internal, "decode data of %s: %v", p, err)
	}
	return nil
}

// BuildInfo is the answer of /api/v1/status/buildinfo.
type BuildInfo struct {
	Version   string `json:"version"`
	Revision  string `json:"revision"`
	Branch    string `json:"branch"`
	GoVersion string `json:"goVersion"`
}

// BuildInfo returns the version of Prometheus.
func (c *Client) BuildInfo(ctx context.Context) (BuildInfo, error) {
	var bi BuildInfo
	if err := c.getAPI(ctx, "/api/v1/status/buildinfo", nil, &bi); err != nil {
		return BuildInfo{}, err
	}
	return bi, nil
}

// ExternalLabels returns global.external_labels of the loaded configuration.
func (c *Client) ExternalLabels(ctx context.Context) (labels.Labels, error) {
	var cfg struct {
		YAML string `json:"yaml"`
	}
	if err := c.getAPI(ctx, "/api/v1/status/config", nil, &cfg); err != nil {
		return labels.EmptyLabels(), err
	}
	return ParseExternalLabels([]byte(cfg.YAML))
}

// ParseExternalLabels reads global.external_labels from a Prometheus
// configuration document. Only that part is decoded so that configuration
// fields newer than our Prometheus library don't break the sidecar.
func ParseExternalLabels(doc []byte) (labels.Labels, error) {
	var cfg struct {
		Global struct {
			ExternalLabels map[string]string `yaml:"external_labels"`
		} `yaml:"global"`
	}
	if err := yaml.Unmarshal(doc, &cfg); err != nil {
		return labels.EmptyLabels(), fmt.Errorf("parse Prometheus configuration: %w", err)
	}
	return labels.FromMap(cfg.Global.ExternalLabels), nil
}

// Flags are the TSDB command-line flags the sidecar checks.
type Flags struct {
	TSDBPath        string
	TSDBMinDuration time.Duration
	TSDBMaxDuration time.Duration
	TSDBRetention   string
}

// Flags returns the TSDB flags Prometheus runs with, or ErrFlagsNotFound.
func (c *Client) Flags(ctx context.Context) (Flags, error) {
	var raw map[string]string
	if err := c.getAPI(ctx, "/api/v1/status/flags", nil, &raw); err != nil {
		var he *HTTPError
		if errors.As(err, &he) && he.Code == http.StatusNotFound {
			return Flags{}, ErrFlagsNotFound
		}
		return Flags{}, err
	}
	f := Flags{TSDBPath: raw["storage.tsdb.path"], TSDBRetention: raw["storage.tsdb.retention.time"]}
	var err error
	if f.TSDBMinDuration, err = parseDuration(raw["storage.tsdb.min-block-duration"]); err != nil {
		return Flags{}, fmt.Errorf("parse storage.tsdb.min-block-duration: %w", err)
	}
	if f.TSDBMaxDuration, err = parseDuration(raw["storage.tsdb.max-block-duration"]); err != nil {
		return Flags{}, fmt.Errorf("parse storage.tsdb.max-block-duration: %w", err)
	}
	return f, nil
}

// parseDuration reads a Prometheus duration such as 2h or 1d12h.
func parseDuration(s string) (time.Duration, error) {
	if s == "" {
		return 0, nil
	}
	// Prometheus durations allow d, w and y, which time.ParseDuration does not.
	var total time.Duration
	units := map[byte]time.Duration{
		'y': 365 * 24 * time.Hour, 'w': 7 * 24 * time.Hour, 'd': 24 * time.Hour,
		'h': time.Hour, 'm': time.Minute, 's': time.Second,
	}
	rest := s
	for rest != "" {
		i := 0
		for i < len(rest) && rest[i] >= '0' && rest[i] <= '9' {
			i++
		}
		if i == 0 {
			return 0, fmt.Errorf("duration %q: expected a number", s)
		}
		n, err := strconv.ParseInt(rest[:i], 10, 64)
		if err != nil {
			return 0, fmt.Errorf("duration %q: %w", s, err)
		}
		rest = rest[i:]
		unit := time.Duration(0)
		switch {
		case strings.HasPrefix(rest, "ms"):
			unit, rest = time.Millisecond, rest[2:]
		case rest != "" && units[rest[0]] != 0:
			unit, rest = units[rest[0]], rest[1:]
		default:
			return 0, fmt.Errorf("duration %q: unknown unit", s)
		}
		total += time.Duration(n) * unit
	}
	return total, nil
}

// FormatTime renders a millisecond timestamp for the HTTP API, clamped to the
// range Prometheus can parse (the StoreAPI uses MinInt64/MaxInt64 for "all").
func FormatTime(ms int64) string {
	const (
		minMS = -62135596800000 // 0001-01-01
		maxMS = 253402300799000 // 9999-12-31
	)
	ms = max(minMS, min(maxMS, ms))
	return strconv.FormatFloat(float64(ms)/1000, 'f', 3, 64)
}

// MatchersString renders matchers as one series selector.
func MatchersString(ms []*labels.Matcher) string {
	parts := make([]string, 0, len(ms))
	for _, m := range ms {
		parts = append(parts, m.String())
	}
	return "{" + strings.Join(parts, ",") + "}"
}

func rangeValues(start, end int64, ms []*labels.Matcher) url.Values {
	q := url.Values{}
	if start != math.MinInt64 {
		q.Set("start", FormatTime(start))
	}
	if end != math.MaxInt64 {
		q.Set("end", FormatTime(end))
	}
	if len(ms) > 0 {
		q.Add("match[]", MatchersString(ms))
	}
	return q
}

// LabelNames returns the label names of series matching ms in [start, end]
// (milliseconds), sorted.
func (c *Client) LabelNames(ctx context.Context, ms []*labels.Matcher, start, end int64) ([]string, error) {
	var names []string
	if err := c.postAPI(ctx, "/api/v1/labels", rangeValues(start, end, ms), &names); err != nil {
		return nil, err
	}
	sort.Strings(names)
	return names, nil
}

// LabelValues returns the values of label name in [start, end], sorted.
func (c *Client) LabelValues(ctx context.Context, name string, start, end int64) ([]string, error) {
	var values []string
	if err := c.getAPI(ctx, "/api/v1/label/"+url.PathEscape(name)+"/values", rangeValues(start, end, nil), &values); err != nil {
		return nil, err
	}
	sort.Strings(values)
	return values, nil
}

// Series returns the label sets of series matching ms in [start, end].
func (c *Client) Series(ctx context.Context, ms []*labels.Matcher, start, end int64) ([]map[string]string, error) {
	var series []map[string]string
	if err := c.postAPI(ctx, "/api/v1/series", rangeValues(start, end, ms), &series); err != nil {
		return nil, err
	}
	return series, nil
}

// Rules returns /api/v1/rules for typ ("" for all, "alert", "record").
func (c *Client) Rules(ctx context.Context, typ string) (*RuleDiscovery, error) {
	q := url.Values{}
	if typ != "" {
		q.Set("type", typ)
	}
	var rd RuleDiscovery
	if err := c.getAPI(ctx, "/api/v1/rules", q, &rd); err != nil {
		return nil, err
	}
	return &rd, nil
}

// Targets returns /api/v1/targets for state ("" for any, "active", "dropped").
func (c *Client) Targets(ctx context.Context, state string) (*TargetDiscovery, error) {
	q := url.Values{}
	if state != "" {
		q.Set("state", state)
	}
	var td TargetDiscovery
	if err := c.getAPI(ctx, "/api/v1/targets", q, &td); err != nil {
		return nil, err
	}
	return &td, nil
}

// Metadata returns /api/v1/metadata, optionally for one metric and limited
// to limit metrics (limit < 0: no limit).
func (c *Client) Metadata(ctx context.Context, metric string, limit int) (map[string][]MetricMetadata, error) {
	q := url.Values{}
	if metric != "" {
		q.Set("metric", metric)
	}
	if limit >= 0 {
		q.Set("limit", strconv.Itoa(limit))
	}
	var md map[string][]MetricMetadata
	if err := c.getAPI(ctx, "/api/v1/metadata", q, &md); err != nil {
		return nil, err
	}
	return md, nil
}

// Exemplars returns /api/v1/query_exemplars for query in [start, end] ms.
func (c *Client) Exemplars(ctx context.Context, query string, start, end int64) ([]ExemplarData, error) {
	q := url.Values{"query": {query}, "start": {FormatTime(start)}, "end": {FormatTime(end)}}
	var data []ExemplarData
	if err := c.postAPI(ctx, "/api/v1/query_exemplars", q, &data); err != nil {
		return nil, err
	}
	return data, nil
}

// Reload asks Prometheus to reload its configuration (POST /-/reload, which
// needs --web.enable-lifecycle).
func (c *Client) Reload(ctx context.Context) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, c.endpoint("/-/reload", nil).String(), nil)
	if err != nil {
		return fmt.Errorf("build reload request: %w", err)
	}
	resp, err := c.do(req, "reload Prometheus")
	if err != nil {
		return err
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	return resp.Body.Close()
}
