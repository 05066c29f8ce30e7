package promclient

import (
	"encoding/json"
	"fmt"
	"math"
	"strconv"
	"time"
)

// The JSON documents of the Prometheus HTTP API the sidecar forwards. Only the
// fields the Thanos APIs carry are decoded.

// RuleDiscovery is the data of /api/v1/rules.
type RuleDiscovery struct {
	Groups []RuleGroup `json:"groups"`
}

// RuleGroup is one rule group.
type RuleGroup struct {
	Name           string    `json:"name"`
	File           string    `json:"file"`
	Rules          []Rule    `json:"rules"`
	Interval       float64   `json:"interval"`
	Limit          int64     `json:"limit"`
	EvaluationTime float64   `json:"evaluationTime"`
	LastEvaluation time.Time `json:"lastEvaluation"`
}

// Rule is an alerting or recording rule; Type says which.
type Rule struct {
	Type           string            `json:"type"` // "alerting" or "recording"
	State          string            `json:"state"`
	Name           string            `json:"name"`
	Query          string            `json:"query"`
	Duration       float64           `json:"duration"`
	KeepFiringFor  float64           `json:"keepFiringFor"`
	Labels         map[string]string `json:"labels"`
	Annotations    map[string]string `json:"annotations"`
	Alerts         []Alert           `json:"alerts"`
	Health         string            `json:"health"`
	LastError      string            `json:"lastError"`
	EvaluationTime float64           `json:"evaluationTime"`
	LastEvaluation time.Time         `json:"lastEvaluation"`
}

// Alert is an active instance of an alerting rule.
type Alert struct {
	Labels      map[string]string `json:"labels"`
	Annotations map[string]string `json:"annotations"`
	State       string            `json:"state"`
	ActiveAt    *time.Time        `json:"activeAt"`
	Value       string            `json:"value"`
}

// TargetDiscovery is the data of /api/v1/targets.
type TargetDiscovery struct {
	ActiveTargets  []ActiveTarget  `json:"activeTargets"`
	DroppedTargets []DroppedTarget `json:"droppedTargets"`
}

// ActiveTarget is a scraped target.
type ActiveTarget struct {
	DiscoveredLabels   map[string]string `json:"discoveredLabels"`
	Labels             map[string]string `json:"labels"`
	ScrapePool         string            `json:"scrapePool"`
	ScrapeURL          string            `json:"scrapeUrl"`
	GlobalURL          string            `json:"globalUrl"`
	LastError          string            `json:"lastError"`
	LastScrape         time.Time         `json:"lastScrape"`
	LastScrapeDuration float64           `json:"lastScrapeDuration"`
	Health             string            `json:"health"`
}

// DroppedTarget is a target relabelling dropped.
type DroppedTarget struct {
	DiscoveredLabels map[string]string `json:"discoveredLabels"`
}

// MetricMetadata is the type, help and unit of a metric.
type MetricMetadata struct {
	Type string `json:"type"`
	Help string `json:"help"`
	Unit string `json:"unit"`
}

// ExemplarData are the exemplars of one series.
type ExemplarData struct {
	SeriesLabels map[string]string `json:"seriesLabels"`
	Exemplars    []Exemplar        `json:"exemplars"`
}

// Exemplar is one exemplar; the API sends the value as a string and the
// timestamp as float seconds.
type Exemplar struct {
	Labels    map[string]string
	Value     float64
	Timestamp int64 // ms
}

// UnmarshalJSON decodes the API's string value and float-seconds timestamp.
func (e *Exemplar) UnmarshalJSON(b []byte) error {
	var raw struct {
		Labels    map[string]string `json:"labels"`
		Value     json.RawMessage   `json:"value"`
		Timestamp json.Number       `json:"timestamp"`
	}
	if err := json.Unmarshal(b, &raw); err != nil {
		return err
	}
	e.Labels = raw.Labels
	v, err := parseSampleValue(raw.Value)
	if err != nil {
		return fmt.Errorf("exemplar value: %w", err)
	}
	e.Value = v
	ts, err := raw.Timestamp.Float64()
	if err != nil {
		return fmt.Errorf("exemplar timestamp: %w", err)
	}
	e.Timestamp = int64(math.Round(ts * 1000))
	return nil
}

// parseSampleValue reads a JSON sample value: a string ("1.5", "NaN",
// "+Inf") or, leniently, a number.
func parseSampleValue(b json.RawMessage) (float64, error) {
	var s string
	if err := json.Unmarshal(b, &s); err == nil {
		return strconv.ParseFloat(s, 64)
	}
	var f float64
	err := json.Unmarshal(b, &f)
	return f, err
}
