// Package agentstatus defines the JSON document the agent serves at
// /api/v1/status and the operator reads into custom resource status. It is the
// one schema shared by both sides: change it compatibly (add fields only).
package agentstatus

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"time"
)

// Path is where the agent serves the document.
const Path = "/api/v1/status"

// Component names the agent mode that produced a document.
type Component string

// The agent modes.
const (
	ComponentSidecar Component = "sidecar"
	ComponentStore   Component = "store"
)

// Status is the document served at Path. Exactly one of Sidecar and Store is set.
type Status struct {
	Component Component `json:"component"`
	Version   string    `json:"version"`
	// Ready mirrors /-/ready.
	Ready bool `json:"ready"`
	// StartTime of the agent process.
	StartTime time.Time      `json:"startTime"`
	Sidecar   *SidecarStatus `json:"sidecar,omitempty"`
	Store     *StoreStatus   `json:"store,omitempty"`
}

// SidecarStatus reports Prometheus reachability and block shipping.
type SidecarStatus struct {
	PrometheusURL       string            `json:"prometheusURL"`
	PrometheusReachable bool              `json:"prometheusReachable"`
	PrometheusVersion   string            `json:"prometheusVersion,omitempty"`
	ExternalLabels      map[string]string `json:"externalLabels,omitempty"`
	LastHeartbeat       *time.Time        `json:"lastHeartbeat,omitempty"`
	// UploadsEnabled is false when the agent runs without an objstore config.
	UploadsEnabled    bool       `json:"uploadsEnabled"`
	Uploaded          int64      `json:"uploaded"`
	Pending           int64      `json:"pending"`
	Failed            int64      `json:"failed"`
	LastUploadedBlock string     `json:"lastUploadedBlock,omitempty"`
	LastUploadTime    *time.Time `json:"lastUploadTime,omitempty"`
	// MinTime and MaxTime (Unix ms) the sidecar serves.
	MinTime   int64  `json:"minTime"`
	MaxTime   int64  `json:"maxTime"`
	LastError string `json:"lastError,omitempty"`
}

// StoreStatus reports the bucket sync of a store gateway.
type StoreStatus struct {
	BlocksLoaded     int64      `json:"blocksLoaded"`
	LastSyncTime     *time.Time `json:"lastSyncTime,omitempty"`
	LastSyncError    string     `json:"lastSyncError,omitempty"`
	InitialSyncDone  bool       `json:"initialSyncDone"`
	MinTime          int64      `json:"minTime"` // Unix ms; 0 when no block is loaded
	MaxTime          int64      `json:"maxTime"`
	IndexHeaderBytes int64      `json:"indexHeaderBytes"`
}

// Fetch reads the status document of the agent at baseURL (http://host:port).
func Fetch(ctx context.Context, client *http.Client, baseURL string) (*Status, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, baseURL+Path, nil)
	if err != nil {
		return nil, fmt.Errorf("build status request: %w", err)
	}
	resp, err := client.Do(req)
	if err != nil {
		return nil, fmt.Errorf("get agent status: %w", err)
	}
	defer func() { _ = resp.Body.Close() }()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return nil, fmt.Errorf("read agent status: %w", err)
	}
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("get agent status: HTTP %d: %s", resp.StatusCode, body)
	}
	var s Status
	if err := json.Unmarshal(body, &s); err != nil {
		return nil, fmt.Errorf("decode agent status: %w", err)
	}
	return &s, nil
}
