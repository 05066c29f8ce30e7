package bucketstore

// part is a byte range of an object covering elements [elemStart, elemEnd)
// of a sorted list of wanted ranges.
type part struct {
	start, end         uint64
	elemStart, elemEnd int
}

// partition groups n sorted ranges into parts whose gaps are at most maxGap
// bytes: reading a few unneeded bytes is much cheaper than another request
// to object storage.
func partition(n int, rng func(int) (start, end uint64), maxGap uint64) []part {
	var parts []part
	for i := 0; i < n; {
		s, e := rng(i)
		p := part{start: s, end: e, elemStart: i}
		i++
		for ; i < n; i++ {
			s, e := rng(i)
			if s > p.end+maxGap {
				break
			}
			p.end = max(p.end, e)
		}
		p.elemEnd = i
		parts = append(parts, p)
	}
	return parts
}
