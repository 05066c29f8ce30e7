package block

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"os"
	"path"
	"path/filepath"
	"slices"
)

// SegmentFiles returns the names of the chunk segment files of the block in
// dir, sorted, as the segment_files field of the Thanos section lists them.
func SegmentFiles(dir string) ([]string, error) {
	entries, err := os.ReadDir(filepath.Join(dir, ChunksDirname))
	if err != nil {
		return nil, fmt.Errorf("list chunk segments: %w", err)
	}
	var names []string
	for _, e := range entries {
		if e.Type().IsRegular() {
			names = append(names, e.Name())
		}
	}
	slices.Sort(names)
	return names, nil
}

// GatherFiles lists the files of the block in dir the way Thanos records them
// in meta.json: every chunk segment and the index with size and, unless hf is
// HashNone, hash; meta.json itself by name only (it is rewritten on upload).
// Paths are slash-separated and relative to the block, sorted.
func GatherFiles(dir string, hf HashFunc) ([]File, error) {
	if hf != HashNone && hf != HashSHA256 {
		return nil, fmt.Errorf("hash function %q: want %q or none", hf, HashSHA256)
	}
	segs, err := SegmentFiles(dir)
	if err != nil {
		return nil, err
	}
	rels := make([]string, 0, len(segs)+1)
	for _, s := range segs {
		rels = append(rels, path.Join(ChunksDirname, s))
	}
	rels = append(rels, IndexFilename)
	files := make([]File, 0, len(rels)+1)
	for _, rel := range rels {
		f, err := statFile(filepath.Join(dir, filepath.FromSlash(rel)), rel, hf)
		if err != nil {
			return nil, err
		}
		files = append(files, f)
	}
	files = append(files, File{RelPath: MetaFilename})
	slices.SortFunc(files, func(a, b File) int {
		switch {
		case a.RelPath < b.RelPath:
			return -1
		case a.RelPath > b.RelPath:
			return 1
		}
		return 0
	})
	return files, nil
}

func statFile(name, rel string, hf HashFunc) (File, error) {
	fi, err := os.Stat(name)
	if err != nil {
		return File{}, fmt.Errorf("stat %s: %w", rel, err)
	}
	f := File{RelPath: rel, SizeBytes: fi.Size()}
	if hf == HashSHA256 {
		sum, err := FileSHA256(name)
		if err != nil {
			return File{}, err
		}
		f.Hash = &ObjectHash{Func: HashSHA256, Value: sum}
	}
	return f, nil
}

// FileSHA256 returns the hex SHA256 of a file's content.
func FileSHA256(name string) (string, error) {
	f, err := os.Open(name)
	if err != nil {
		return "", fmt.Errorf("open %s for hashing: %w", name, err)
	}
	defer func() { _ = f.Close() }()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return "", fmt.Errorf("hash %s: %w", name, err)
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

// ChunksPrefix is the object prefix <id>/chunks/ of a block's segments.
func ChunksPrefix(id string) string { return path.Join(id, ChunksDirname) + "/" }
