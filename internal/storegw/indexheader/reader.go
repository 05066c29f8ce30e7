package indexheader

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"sort"
	"strings"
	"sync"
	"unsafe"

	"github.com/prometheus/prometheus/tsdb/encoding"
	"github.com/prometheus/prometheus/tsdb/fileutil"
	"github.com/prometheus/prometheus/tsdb/index"
)

// NotFound is the range PostingsOffsets returns for a value the block does not have.
var NotFound = index.Range{Start: -1, End: -1}

// postingLengthSize is the BE32 length that starts every postings list in the
// index; ranges point past it, at the series count.
const postingLengthSize = 4

// Reader answers the questions a store gateway asks an index-header.
type Reader interface {
	// IndexVersion is the format version of the block's index.
	IndexVersion() (int, error)
	// PostingsOffsets returns, for each of the sorted values of label name,
	// the byte range of its postings list in the index (count + series refs;
	// the end may overshoot) or NotFound.
	PostingsOffsets(name string, values ...string) ([]index.Range, error)
	// LookupSymbol resolves a symbol reference of a series entry.
	LookupSymbol(ctx context.Context, ref uint32) (string, error)
	// LabelValues returns the sorted values of label name.
	LabelValues(name string) ([]string, error)
	// MatchingLabelValues returns the sorted values of label name that start
	// with prefix and, when keep is not nil, for which keep returns true. The
	// string keep sees is only valid during the call.
	MatchingLabelValues(name, prefix string, keep func(string) bool) ([]string, error)
	// LabelNames returns the sorted label names of the block.
	LabelNames() ([]string, error)
	Close() error
}

// DefaultPostingOffsetsInMemSampling keeps every 32nd postings offset table
// entry in memory, as Thanos does: lookups scan at most 32 entries of the
// mmapped table while memory stays a fraction of the table size.
const DefaultPostingOffsetsInMemSampling = 32

type sampledOffset struct {
	value    string
	tableOff int // offset of the entry from the start of the table contents
}

type nameOffsets struct {
	samples []sampledOffset
	// lastValEnd is where the postings list of the last value ends.
	lastValEnd int64
}

const valueCacheSize = 1024

// BinaryReader reads an index-header file through mmap.
type BinaryReader struct {
	f    *fileutil.MmapFile
	b    []byte
	size int64

	toc          TOC
	indexVersion int
	// tableStart and tableEnd delimit the entries of the postings offset table.
	tableStart, tableEnd int

	symbols     *index.Symbols
	nameSymbols map[uint32]string
	postings    map[string]*nameOffsets

	valueMu    sync.Mutex
	valueCache [valueCacheSize]struct {
		ref uint32
		s   string
	}
}

// Open maps the index-header at path and verifies it (header, TOC and the
// CRC32 of the symbols and postings offset table), so that a corrupted or
// truncated file is detected here and can be rebuilt.
func Open(path string, sampling int) (*BinaryReader, error) {
	if sampling <= 0 {
		sampling = DefaultPostingOffsetsInMemSampling
	}
	f, err := fileutil.OpenMmapFile(path)
	if err != nil {
		return nil, fmt.Errorf("mmap index-header: %w", err)
	}
	r := &BinaryReader{f: f, b: f.Bytes(), size: int64(len(f.Bytes()))}
	if err := r.init(sampling); err != nil {
		_ = f.Close()
		return nil, fmt.Errorf("read index-header %s: %w", path, err)
	}
	return r, nil
}

// OpenBytes reads an index-header held in memory (tests, tools).
func OpenBytes(b []byte, sampling int) (*BinaryReader, error) {
	if sampling <= 0 {
		sampling = DefaultPostingOffsetsInMemSampling
	}
	r := &BinaryReader{b: b, size: int64(len(b))}
	if err := r.init(sampling); err != nil {
		return nil, err
	}
	return r, nil
}

func (r *BinaryReader) init(sampling int) (err error) {
	// Decoding a corrupted file must never take the process down.
	defer func() {
		if p := recover(); p != nil {
			err = fmt.Errorf("corrupted index-header: %v", p)
		}
	}()
	b := r.b
	if len(b) < headerLen+tocLen {
		return fmt.Errorf("%d bytes is too small: %w", len(b), encoding.ErrInvalidSize)
	}
	if m := binary.BigEndian.Uint32(b[0:4]); m != MagicIndexHeader {
		return fmt.Errorf("invalid magic number %x", m)
	}
	if v := b[4]; v != FormatV1 {
		return fmt.Errorf("unknown index-header version %d", v)
	}
	r.indexVersion = int(b[5])
	if r.indexVersion != index.FormatV2 {
		return fmt.Errorf("unsupported index version %d", r.indexVersion)
	}
	lastPostingEnd := int64(binary.BigEndian.Uint64(b[6:headerLen]))

	t := b[len(b)-tocLen:]
	if crc32.Checksum(t[:16], castagnoli) != binary.BigEndian.Uint32(t[16:]) {
		return fmt.Errorf("read TOC: %w", encoding.ErrInvalidChecksum)
	}
	r.toc = TOC{Symbols: binary.BigEndian.Uint64(t[0:8]), PostingsOffsetTable: binary.BigEndian.Uint64(t[8:16])}
	end := uint64(len(b) - tocLen)
	if r.toc.Symbols < headerLen || r.toc.Symbols >= end || r.toc.PostingsOffsetTable <= r.toc.Symbols || r.toc.PostingsOffsetTable+8 > end {
		return errors.New("TOC points outside the file")
	}

	bs := byteSlice(b)
	r.symbols, err = index.NewSymbols(bs, r.indexVersion, int(r.toc.Symbols))
	if err != nil {
		return fmt.Errorf("read symbols: %w", err)
	}

	tableLen := int(binary.BigEndian.Uint32(b[r.toc.PostingsOffsetTable:]))
	r.tableStart = int(r.toc.PostingsOffsetTable) + 4
	r.tableEnd = r.tableStart + tableLen
	if r.tableEnd > len(b) {
		return errors.New("postings offset table overflows the file")
	}

	r.postings = map[string]*nameOffsets{}
	var (
		lastName, lastValue string
		lastTableOff        int
		count               int
		cur                 *nameOffsets
	)
	err = index.ReadPostingsOffsetTable(bs, r.toc.PostingsOffsetTable, func(name, value []byte, postingsOffset uint64, tableOff int) error {
		if cur == nil || string(name) != lastName {
			if cur != nil {
				// Always keep the last value of a name so lookups know where it ends.
				if (count-1)%sampling != 0 {
					cur.samples = append(cur.samples, sampledOffset{value: lastValue, tableOff: lastTableOff})
				}
				cur.lastValEnd = int64(postingsOffset) - crc32.Size
			}
			lastName = string(name)
			if _, dup := r.postings[lastName]; dup {
				return fmt.Errorf("postings offset table is not sorted: %q appears twice", lastName)
			}
			cur = &nameOffsets{}
			r.postings[lastName] = cur
			count = 0
		}
		lastValue = string(value)
		lastTableOff = tableOff
		if count%sampling == 0 {
			cur.samples = append(cur.samples, sampledOffset{value: lastValue, tableOff: tableOff})
		}
		count++
		return nil
	})
	if err != nil {
		return fmt.Errorf("read postings offset table: %w", err)
	}
	if cur != nil {
		if (count-1)%sampling != 0 {
			cur.samples = append(cur.samples, sampledOffset{value: lastValue, tableOff: lastTableOff})
		}
		// The index does not record where the last postings list ends; the
		// start of the postings offset table is a safe upper bound.
		cur.lastValEnd = lastPostingEnd - crc32.Size
	}
	for _, v := range r.postings {
		v.samples = append([]sampledOffset(nil), v.samples...)
	}

	r.nameSymbols = make(map[uint32]string, len(r.postings))
	for name := range r.postings {
		if name == "" {
			continue
		}
		ref, err := r.symbols.ReverseLookup(name)
		if err != nil {
			return fmt.Errorf("reverse lookup of label name %q: %w", name, err)
		}
		r.nameSymbols[ref] = name
	}
	return nil
}

// Size is the size of the index-header in bytes.
func (r *BinaryReader) Size() int64 { return r.size }

// IndexVersion implements Reader.
func (r *BinaryReader) IndexVersion() (int, error) { return r.indexVersion, nil }

// entry decodes the postings offset table entry at table offset off.
func (r *BinaryReader) entry(off int) (value []byte, postingsOff uint64, next int, err error) {
	if off < 0 || r.tableStart+off >= r.tableEnd {
		return nil, 0, 0, encoding.ErrInvalidSize
	}
	d := encoding.Decbuf{B: r.b[r.tableStart+off : r.tableEnd]}
	start := d.Len()
	d.Uvarint()      // Key count.
	d.UvarintBytes() // Label name.
	value = d.UvarintBytes()
	postingsOff = d.Uvarint64()
	if d.Err() != nil {
		return nil, 0, 0, d.Err()
	}
	return value, postingsOff, off + start - d.Len(), nil
}

// PostingsOffsets implements Reader. values must be sorted.
func (r *BinaryReader) PostingsOffsets(name string, values ...string) ([]index.Range, error) {
	out := make([]index.Range, len(values))
	for i := range out {
		out[i] = NotFound
	}
	e, ok := r.postings[name]
	if !ok || len(e.samples) == 0 {
		return out, nil
	}
	last := e.samples[len(e.samples)-1].value
	var (
		valid  bool
		curVal string
		curOff uint64
		next   int
	)
	for i, v := range values {
		j := sort.Search(len(e.samples), func(k int) bool { return e.samples[k].value > v }) - 1
		if j < 0 {
			continue // Before the first value.
		}
		// Values are sorted, so the cursor usually just moves forward; jump
		// through the samples only when the wanted value is beyond them.
		if !valid || curVal > v || curVal < e.samples[j].value {
			val, off, nx, err := r.entry(e.samples[j].tableOff)
			if err != nil {
				return nil, fmt.Errorf("postings offset of %s=%q: %w", name, v, err)
			}
			valid, curVal, curOff, next = true, string(val), off, nx
		}
		for curVal < v && curVal != last {
			val, off, nx, err := r.entry(next)
			if err != nil {
				return nil, fmt.Errorf("postings offset of %s=%q: %w", name, v, err)
			}
			curVal, curOff, next = string(val), off, nx
		}
		if curVal != v {
			continue
		}
		rng := index.Range{Start: int64(curOff) + postingLengthSize, End: e.lastValEnd}
		if curVal != last {
			_, nextOff, _, err := r.entry(next)
			if err != nil {
				return nil, fmt.Errorf("postings offset after %s=%q: %w", name, v, err)
			}
			rng.End = int64(nextOff) - crc32.Size
		}
		out[i] = rng
	}
	return out, nil
}

// LookupSymbol implements Reader.
func (r *BinaryReader) LookupSymbol(_ context.Context, ref uint32) (string, error) {
	if s, ok := r.nameSymbols[ref]; ok {
		return s, nil
	}
	slot := &r.valueCache[ref%valueCacheSize]
	r.valueMu.Lock()
	if slot.ref == ref && slot.s != "" {
		s := slot.s
		r.valueMu.Unlock()
		return s, nil
	}
	r.valueMu.Unlock()
	s, err := r.symbols.Lookup(ref)
	if err != nil {
		return "", fmt.Errorf("lookup symbol %d: %w", ref, err)
	}
	r.valueMu.Lock()
	slot.ref, slot.s = ref, s
	r.valueMu.Unlock()
	return s, nil
}

// LabelValues implements Reader. The strings are copies, safe after Close.
func (r *BinaryReader) LabelValues(name string) ([]string, error) {
	return r.MatchingLabelValues(name, "", nil)
}

// MatchingLabelValues implements Reader. The scan starts at the last sampled
// value before prefix and stops at the first value past it, and only kept
// values are copied: a regex like instance=~"host-00.." reads a few table
// entries instead of allocating every value of the label.
func (r *BinaryReader) MatchingLabelValues(name, prefix string, keep func(string) bool) ([]string, error) {
	e, ok := r.postings[name]
	if !ok || len(e.samples) == 0 {
		return nil, nil
	}
	last := e.samples[len(e.samples)-1].value
	j := max(sort.Search(len(e.samples), func(k int) bool { return e.samples[k].value >= prefix })-1, 0)
	var out []string
	if prefix == "" && keep == nil {
		out = make([]string, 0, len(e.samples))
	}
	off := e.samples[j].tableOff
	for {
		val, _, next, err := r.entry(off)
		if err != nil {
			return nil, fmt.Errorf("label values of %s: %w", name, err)
		}
		// The value aliases the mapped file; it is copied only when kept.
		v := unsafe.String(unsafe.SliceData(val), len(val))
		if v >= prefix {
			if !strings.HasPrefix(v, prefix) {
				return out, nil
			}
			if keep == nil || keep(v) {
				out = append(out, string(val))
			}
		}
		if v == last {
			return out, nil
		}
		off = next
	}
}

// LabelNames implements Reader.
func (r *BinaryReader) LabelNames() ([]string, error) {
	out := make([]string, 0, len(r.postings))
	for n := range r.postings {
		if n == "" { // The all-postings key.
			continue
		}
		out = append(out, n)
	}
	sort.Strings(out)
	return out, nil
}

// Close unmaps the file.
func (r *BinaryReader) Close() error {
	if r.f == nil {
		return nil
	}
	return r.f.Close()
}
