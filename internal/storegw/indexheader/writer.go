// Package indexheader builds and reads index-headers: the small part of a
// block's index (symbols and the postings offset table) that a store gateway
// keeps on local disk so that it can plan ranged reads of the full index in
// object storage. The file format is Thanos's binary index-header, so the
// files are interchangeable with those `thanos store` writes.
//
// Layout (all integers big endian):
//
//	magic uint32 (0xBAAAD792) | version byte (1) | index version byte |
//	start of the index's postings offset table uint64 |
//	symbols section copied from the index (length, count, symbols, CRC32) |
//	postings offset table copied from the index (to the end of the index file) |
//	TOC: symbols offset uint64 | postings offset table offset uint64 | CRC32 of the TOC
package indexheader

import (
	"bufio"
	"context"
	"encoding/binary"
	"fmt"
	"hash/crc32"
	"io"
	"os"
	"path/filepath"

	"github.com/oklog/ulid/v2"
	"github.com/prometheus/prometheus/tsdb/index"
	"github.com/thanos-io/objstore"

	"github.com/stevedore-dev/stevedore/internal/block"
)

const (
	// Filename is the name of the index-header in a block's local directory.
	Filename = "index-header"

	// MagicIndexHeader starts every index-header file.
	MagicIndexHeader = 0xBAAAD792
	// FormatV1 is the only index-header format version.
	FormatV1 = 1

	// headerLen is magic + version + index version + postings table offset.
	headerLen = 4 + 1 + 1 + 8
	// tocLen is the index-header TOC: two offsets and a CRC32.
	tocLen = 2*8 + crc32.Size
	// indexTOCLen is the TOC at the end of a TSDB index: six offsets and a CRC32.
	indexTOCLen = 6*8 + crc32.Size
)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// TOC locates the sections of an index-header.
type TOC struct {
	Symbols             uint64
	PostingsOffsetTable uint64
}

// indexLayout is what Build needs to know about the index object.
type indexLayout struct {
	size    int64
	version int
	toc     *index.TOC
}

func readIndexLayout(ctx context.Context, bkt objstore.BucketReader, name string) (*indexLayout, error) {
	attrs, err := bkt.Attributes(ctx, name)
	if err != nil {
		return nil, fmt.Errorf("attributes of %s: %w", name, err)
	}
	if attrs.Size < index.HeaderLen+indexTOCLen {
		return nil, fmt.Errorf("%s: %d bytes is too small for a TSDB index", name, attrs.Size)
	}
	head, err := readRange(ctx, bkt, name, 0, index.HeaderLen)
	if err != nil {
		return nil, err
	}
	if m := binary.BigEndian.Uint32(head[:4]); m != index.MagicIndex {
		return nil, fmt.Errorf("%s: invalid magic number %x", name, m)
	}
	version := int(head[4])
	if version != index.FormatV2 {
		// Format v1 (Prometheus < 2.1) refers to symbols by file offset and has an
		// unsorted postings table; nothing has written it for years.
		return nil, fmt.Errorf("%s: unsupported index format version %d", name, version)
	}
	tail, err := readRange(ctx, bkt, name, attrs.Size-indexTOCLen, indexTOCLen)
	if err != nil {
		return nil, err
	}
	toc, err := index.NewTOCFromByteSlice(byteSlice(tail))
	if err != nil {
		return nil, fmt.Errorf("%s: read TOC: %w", name, err)
	}
	if toc.Symbols >= toc.Series || toc.Series > uint64(attrs.Size) || toc.PostingsTable >= uint64(attrs.Size) {
		return nil, fmt.Errorf("%s: TOC points outside the file", name)
	}
	return &indexLayout{size: attrs.Size, version: version, toc: toc}, nil
}

func readRange(ctx context.Context, bkt objstore.BucketReader, name string, off, length int64) ([]byte, error) {
	rc, err := bkt.GetRange(ctx, name, off, length)
	if err != nil {
		return nil, fmt.Errorf("get range %d+%d of %s: %w", off, length, name, err)
	}
	defer func() { _ = rc.Close() }()
	b := make([]byte, length)
	if _, err := io.ReadFull(rc, b); err != nil {
		return nil, fmt.Errorf("read range %d+%d of %s: %w", off, length, name, err)
	}
	return b, nil
}

// Build writes the index-header of block id to filename from two ranged reads
// of the block's index (symbols, and postings offset table to the end), never
// downloading the series and postings sections. It writes to filename+".tmp"
// and renames, so a crash never leaves a truncated index-header behind.
// It returns the size of the written file.
func Build(ctx context.Context, bkt objstore.BucketReader, id ulid.ULID, filename string) (size int64, err error) {
	name := block.IndexObject(id)
	layout, err := readIndexLayout(ctx, bkt, name)
	if err != nil {
		return 0, err
	}
	if err := os.MkdirAll(filepath.Dir(filename), 0o755); err != nil {
		return 0, fmt.Errorf("create index-header dir: %w", err)
	}
	tmp := filename + ".tmp"
	f, err := os.OpenFile(tmp, os.O_CREATE|os.O_TRUNC|os.O_WRONLY, 0o644)
	if err != nil {
		return 0, fmt.Errorf("create %s: %w", tmp, err)
	}
	defer func() {
		if err != nil {
			_ = f.Close()
			_ = os.Remove(tmp)
		}
	}()
	w := &posWriter{w: bufio.NewWriterSize(f, 64<<10)}

	var hdr [headerLen]byte
	binary.BigEndian.PutUint32(hdr[0:4], MagicIndexHeader)
	hdr[4] = FormatV1
	hdr[5] = byte(layout.version)
	binary.BigEndian.PutUint64(hdr[6:], layout.toc.PostingsTable)
	if _, err := w.Write(hdr[:]); err != nil {
		return 0, fmt.Errorf("write index-header: %w", err)
	}

	var toc TOC
	toc.Symbols = w.pos
	if err := copyRange(ctx, bkt, name, w, int64(layout.toc.Symbols), int64(layout.toc.Series-layout.toc.Symbols)); err != nil {
		return 0, fmt.Errorf("copy symbols: %w", err)
	}
	toc.PostingsOffsetTable = w.pos
	if err := copyRange(ctx, bkt, name, w, int64(layout.toc.PostingsTable), layout.size-int64(layout.toc.PostingsTable)); err != nil {
		return 0, fmt.Errorf("copy postings offset table: %w", err)
	}

	var tb [tocLen]byte
	binary.BigEndian.PutUint64(tb[0:8], toc.Symbols)
	binary.BigEndian.PutUint64(tb[8:16], toc.PostingsOffsetTable)
	binary.BigEndian.PutUint32(tb[16:], crc32.Checksum(tb[:16], castagnoli))
	if _, err := w.Write(tb[:]); err != nil {
		return 0, fmt.Errorf("write index-header TOC: %w", err)
	}
	if err := w.w.Flush(); err != nil {
		return 0, fmt.Errorf("flush %s: %w", tmp, err)
	}
	if err := f.Sync(); err != nil {
		return 0, fmt.Errorf("sync %s: %w", tmp, err)
	}
	if err := f.Close(); err != nil {
		return 0, fmt.Errorf("close %s: %w", tmp, err)
	}
	if err := os.Rename(tmp, filename); err != nil {
		return 0, fmt.Errorf("rename %s: %w", tmp, err)
	}
	return int64(w.pos), nil
}

func copyRange(ctx context.Context, bkt objstore.BucketReader, name string, w io.Writer, off, length int64) error {
	rc, err := bkt.GetRange(ctx, name, off, length)
	if err != nil {
		return fmt.Errorf("get range %d+%d of %s: %w", off, length, name, err)
	}
	defer func() { _ = rc.Close() }()
	n, err := io.Copy(w, rc)
	if err != nil {
		return fmt.Errorf("read range of %s: %w", name, err)
	}
	if n != length {
		return fmt.Errorf("read range of %s: got %d bytes, want %d: %w", name, n, length, io.ErrUnexpectedEOF)
	}
	return nil
}

type posWriter struct {
	w   *bufio.Writer
	pos uint64
}

func (p *posWriter) Write(b []byte) (int, error) {
	n, err := p.w.Write(b)
	p.pos += uint64(n)
	return n, err
}

// byteSlice adapts a []byte to index.ByteSlice.
type byteSlice []byte

func (b byteSlice) Len() int                           { return len(b) }
func (b byteSlice) Range(start, end int) []byte        { return b[start:end] }
func (b byteSlice) Sub(start, end int) index.ByteSlice { return b[start:end] }
