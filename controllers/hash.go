package controllers

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"maps"
	"slices"
)

// hashInputs is a stable hash of named inputs (Secret and ConfigMap contents,
// rendered configs). Keys are sorted so map iteration order does not matter.
func hashInputs(inputs map[string][]byte) string {
	h := sha256.New()
	for _, k := range slices.Sorted(maps.Keys(inputs)) {
		// Length-prefix both parts so that ("ab","c") and ("a","bc") differ.
		b, _ := json.Marshal([2]any{k, inputs[k]})
		h.Write(b)
	}
	return hex.EncodeToString(h.Sum(nil))[:16]
}

// hashBytes is a short hash of b.
func hashBytes(b []byte) string {
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:])[:16]
}
