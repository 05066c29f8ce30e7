package block_test

import (
	"context"
	"path/filepath"
	"testing"

	"github.com/stevedore-dev/stevedore/internal/block"
	"github.com/stevedore-dev/stevedore/internal/testutil/blockgen"
)

func TestGatherFiles(t *testing.T) {
	dir := t.TempDir()
	id, err := blockgen.Write(context.Background(), dir, blockgen.Spec{MinTime: 0, MaxTime: 7_200_000, Series: 3})
	if err != nil {
		t.Fatal(err)
	}
	bdir := filepath.Join(dir, id.String())
	for _, tc := range []struct {
		hf      block.HashFunc
		wantErr bool
	}{
		{hf: block.HashNone},
		{hf: block.HashSHA256},
		{hf: "MD5", wantErr: true},
	} {
		files, err := block.GatherFiles(bdir, tc.hf)
		if (err != nil) != tc.wantErr {
			t.Fatalf("GatherFiles(%q) error %v, want error %v", tc.hf, err, tc.wantErr)
		}
		if tc.wantErr {
			continue
		}
		var rels []string
		for _, f := range files {
			rels = append(rels, f.RelPath)
			switch {
			case f.RelPath == block.MetaFilename:
				if f.SizeBytes != 0 || f.Hash != nil {
					t.Errorf("meta.json entry %+v, want name only", f)
				}
			case f.SizeBytes == 0:
				t.Errorf("%s has no size", f.RelPath)
			case (f.Hash != nil) != (tc.hf == block.HashSHA256):
				t.Errorf("%s hash %v with %q", f.RelPath, f.Hash, tc.hf)
			case f.Hash != nil && len(f.Hash.Value) != 64:
				t.Errorf("%s hash %q", f.RelPath, f.Hash.Value)
			}
		}
		want := []string{"chunks/000001", "index", "meta.json"}
		if len(rels) != len(want) {
			t.Fatalf("files %v, want %v", rels, want)
		}
		for i := range want {
			if rels[i] != want[i] {
				t.Errorf("files %v, want %v", rels, want)
			}
		}
	}
	segs, err := block.SegmentFiles(bdir)
	if err != nil || len(segs) != 1 || segs[0] != "000001" {
		t.Errorf("SegmentFiles = %v, %v", segs, err)
	}
}
