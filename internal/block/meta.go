// Package block describes TSDB blocks in the Thanos bucket layout:
// meta.json with its Thanos section, marker files, and the object names of a
// block's files.
package block

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"path/filepath"
	"time"

	"github.com/oklog/ulid/v2"
	"github.com/prometheus/prometheus/tsdb"
)

// Names of files and directories in a block, locally and in the bucket.
const (
	MetaFilename          = "meta.json"
	IndexFilename         = "index"
	ChunksDirname         = "chunks"
	DeletionMarkFilename  = "deletion-mark.json"
	NoCompactMarkFilename = "no-compact-mark.json"
	// TSDBMetaVersion1 is the only meta.json version Prometheus writes.
	TSDBMetaVersion1 = 1
	// ThanosVersion1 is the version of the Thanos section.
	ThanosVersion1 = 1
)

// SourceType says which component produced a block.
type SourceType string

// Sources of blocks.
const (
	SourceSidecar   SourceType = "sidecar"
	SourceCompactor SourceType = "compactor"
	SourceReceive   SourceType = "receive"
	SourceTest      SourceType = "test"
)

// HashFunc names a file hash function.
type HashFunc string

// Supported hash functions.
const (
	HashNone   HashFunc = ""
	HashSHA256 HashFunc = "SHA256"
)

// Meta is the content of meta.json: Prometheus's block meta plus the Thanos
// section. Field names match Thanos so the files are interchangeable.
type Meta struct {
	tsdb.BlockMeta
	Thanos Thanos `json:"thanos"`
}

// Thanos is the Thanos section of meta.json.
type Thanos struct {
	// Version of the section.
	Version int `json:"version,omitempty"`
	// Labels are the external labels of the block's source.
	Labels     map[string]string `json:"labels"`
	Downsample Downsample        `json:"downsample"`
	Source     SourceType        `json:"source"`
	// SegmentFiles are the chunk segment file names (in chunks/).
	SegmentFiles []string `json:"segment_files,omitempty"`
	// Files lists every file of the block with its size and optional hash.
	Files      []File     `json:"files,omitempty"`
	IndexStats IndexStats `json:"index_stats,omitempty"`
	// UploadTime is when the uploader finished the block.
	UploadTime time.Time `json:"upload_time,omitempty"`
	// Rewrites and Extensions are kept opaque so that a meta.json written by
	// other tools round-trips unchanged.
	Rewrites   json.RawMessage `json:"rewrites,omitempty"`
	Extensions json.RawMessage `json:"extensions,omitempty"`
}

// Downsample says at which resolution a block was downsampled (0: raw).
type Downsample struct {
	Resolution int64 `json:"resolution"`
}

// IndexStats are sizes of the largest entries in the index.
type IndexStats struct {
	SeriesMaxSize int64 `json:"series_max_size,omitempty"`
	ChunkMaxSize  int64 `json:"chunk_max_size,omitempty"`
}

// File is one file of a block.
type File struct {
	RelPath   string      `json:"rel_path"`
	SizeBytes int64       `json:"size_bytes,omitempty"`
	Hash      *ObjectHash `json:"hash,omitempty"`
}

// ObjectHash is a file's hash.
type ObjectHash struct {
	Func  HashFunc `json:"func"`
	Value string   `json:"value"`
}

// ReadMeta decodes a meta.json document, checking that it is one this
// code understands.
func ReadMeta(r io.Reader) (*Meta, error) {
	var m Meta
	dec := json.NewDecoder(r)
	if err := dec.Decode(&m); err != nil {
		return nil, fmt.Errorf("decode meta.json: %w", err)
	}
	if m.Version != TSDBMetaVersion1 {
		return nil, fmt.Errorf("meta.json version %d: only version %d is supported", m.Version, TSDBMetaVersion1)
	}
	if m.ULID == (ulid.ULID{}) {
		return nil, errors.New("meta.json has no ulid")
	}
	if m.MaxTime < m.MinTime {
		return nil, fmt.Errorf("meta.json of %s: maxTime %d before minTime %d", m.ULID, m.MaxTime, m.MinTime)
	}
	return &m, nil
}

// ReadMetaFromDir reads dir/meta.json.
func ReadMetaFromDir(dir string) (*Meta, error) {
	f, err := os.Open(filepath.Join(dir, MetaFilename))
	if err != nil {
		return nil, err
	}
	defer func() { _ = f.Close() }()
	m, err := ReadMeta(f)
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", f.Name(), err)
	}
	return m, nil
}

// Marshal encodes m as meta.json (indented, as Thanos writes it).
func (m *Meta) Marshal() ([]byte, error) {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetIndent("", "\t")
	if err := enc.Encode(m); err != nil {
		return nil, fmt.Errorf("encode meta.json: %w", err)
	}
	return buf.Bytes(), nil
}

// WriteToDir writes dir/meta.json atomically (temporary file, fsync, rename).
func (m *Meta) WriteToDir(dir string) error {
	b, err := m.Marshal()
	if err != nil {
		return err
	}
	return WriteFileAtomic(filepath.Join(dir, MetaFilename), b)
}

// WriteFileAtomic writes data to name through a synced temporary file and a
// rename, so readers see the old or the new content, never a part.
func WriteFileAtomic(name string, data []byte) error {
	tmp := name + ".tmp"
	f, err := os.OpenFile(tmp, os.O_CREATE|os.O_TRUNC|os.O_WRONLY, 0o644)
	if err != nil {
		return fmt.Errorf("create %s: %w", tmp, err)
	}
	if _, err := f.Write(data); err != nil {
		_ = f.Close()
		return fmt.Errorf("write %s: %w", tmp, err)
	}
	if err := f.Sync(); err != nil {
		_ = f.Close()
		return fmt.Errorf("sync %s: %w", tmp, err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("close %s: %w", tmp, err)
	}
	if err := os.Rename(tmp, name); err != nil {
		return fmt.Errorf("rename %s: %w", tmp, err)
	}
	return nil
}

// DeletionMark is the content of deletion-mark.json.
type DeletionMark struct {
	ID           ulid.ULID `json:"id"`
	Version      int       `json:"version"`
	Details      string    `json:"details,omitempty"`
	DeletionTime int64     `json:"deletion_time"` // Unix seconds
}

// NoCompactMark is the content of no-compact-mark.json.
type NoCompactMark struct {
	ID            ulid.ULID `json:"id"`
	Version       int       `json:"version"`
	Details       string    `json:"details,omitempty"`
	NoCompactTime int64     `json:"no_compact_time"` // Unix seconds
	Reason        string    `json:"reason"`
}

// MarkerVersion1 is the version of marker files.
const MarkerVersion1 = 1

// Object names of a block's files in the bucket.

// MetaObject is <id>/meta.json.
func MetaObject(id ulid.ULID) string { return path.Join(id.String(), MetaFilename) }

// IndexObject is <id>/index.
func IndexObject(id ulid.ULID) string { return path.Join(id.String(), IndexFilename) }

// ChunksObject is <id>/chunks/<segment>.
func ChunksObject(id ulid.ULID, segment string) string {
	return path.Join(id.String(), ChunksDirname, segment)
}

// DeletionMarkObject is <id>/deletion-mark.json.
func DeletionMarkObject(id ulid.ULID) string { return path.Join(id.String(), DeletionMarkFilename) }

// IsBlockDir parses a directory (or object prefix) name as a block ULID.
func IsBlockDir(name string) (ulid.ULID, bool) {
	id, err := ulid.ParseStrict(path.Base(filepath.ToSlash(name)))
	return id, err == nil
}
