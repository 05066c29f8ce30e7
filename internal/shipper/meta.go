package shipper

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/oklog/ulid/v2"

	"github.com/stevedore-dev/stevedore/internal/block"
)

// MetaFilename is the shipper's record of uploaded blocks in the TSDB
// directory; the name and format are Thanos's so that switching between the
// Thanos sidecar and Stevedore does not upload anything twice.
const MetaFilename = "thanos.shipper.json"

// MetaVersion1 is the only version of the file.
const MetaVersion1 = 1

// Meta is the content of thanos.shipper.json.
type Meta struct {
	Version  int         `json:"version"`
	Uploaded []ulid.ULID `json:"uploaded"`
}

// ReadMetaFile reads dir/thanos.shipper.json. A missing file is an error
// satisfying errors.Is(err, fs.ErrNotExist).
func ReadMetaFile(dir string) (*Meta, error) {
	b, err := os.ReadFile(filepath.Join(dir, MetaFilename))
	if err != nil {
		return nil, err
	}
	var m Meta
	if err := json.Unmarshal(b, &m); err != nil {
		return nil, fmt.Errorf("decode %s: %w", MetaFilename, err)
	}
	if m.Version != MetaVersion1 {
		return nil, fmt.Errorf("%s: unexpected version %d", MetaFilename, m.Version)
	}
	return &m, nil
}

// WriteMetaFile writes dir/thanos.shipper.json atomically.
func WriteMetaFile(dir string, m *Meta) error {
	if m.Uploaded == nil {
		// Thanos writes [] rather than null; keep the file identical.
		m.Uploaded = []ulid.ULID{}
	}
	b, err := json.MarshalIndent(m, "", "\t")
	if err != nil {
		return fmt.Errorf("encode %s: %w", MetaFilename, err)
	}
	if err := block.WriteFileAtomic(filepath.Join(dir, MetaFilename), b); err != nil {
		return fmt.Errorf("write %s: %w", MetaFilename, err)
	}
	return nil
}

var errNotExist = os.ErrNotExist

func isNotExist(err error) bool { return errors.Is(err, errNotExist) }
