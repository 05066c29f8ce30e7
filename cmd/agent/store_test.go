package main

import (
	"testing"

	"github.com/stevedore-dev/stevedore/internal/storegw"
)

// TestStoreChunkDiskCacheSize checks the sizes the operator and users write.
func TestStoreChunkDiskCacheSize(t *testing.T) {
	for _, tc := range []struct {
		flag    string
		want    int64
		wantErr bool
	}{
		{"4GiB", 4 << 30, false},
		{"6442450944B", 6 << 30, false}, // As the operator renders 6Gi.
		{"0", 0, false},
		{"0B", 0, false},
		{"12x", 0, true},
	} {
		cfg := storegw.DefaultConfig()
		sf := storeFlags{minTime: "-1h", maxTime: "9999-12-31T23:59:59Z", indexCacheSize: "250MB", chunkDiskCacheSize: tc.flag}
		err := sf.apply(&cfg)
		if (err != nil) != tc.wantErr {
			t.Errorf("%q: error %v, want error %v", tc.flag, err, tc.wantErr)
			continue
		}
		if err == nil && cfg.ChunkDiskCacheSize != tc.want {
			t.Errorf("%q: %d bytes, want %d", tc.flag, cfg.ChunkDiskCacheSize, tc.want)
		}
	}
	// Sizes too small for a page map are refused before anything starts.
	cfg := storegw.DefaultConfig()
	cfg.ObjstoreConfig = []byte("type: FILESYSTEM\nconfig: {directory: /tmp}\n")
	cfg.ChunkDiskCacheSize = 1024
	if err := cfg.Validate(); err == nil {
		t.Error("a 1KiB disk chunk cache was accepted")
	}
}
