package policy

import (
	"encoding/binary"
	"hash"
	"hash/maphash"
)

// textSum identifies a piece of policy text: 128 bits of maphash under two
// seeds drawn when the process starts. It tells whether a text is the one
// seen before in this process: a credential element a reload can reuse
// (reuse.go), a block of a streamed file read again (stream.go), a chunk of
// a policy's fingerprint. Two different texts summing the same is a 2^-128
// chance, and the seeds are never shown, so nobody can make one on purpose.
// It is some ten times faster than SHA-256, which a reload of a large policy
// used to spend a fifth of its time on.
type textSum [2]uint64

var textSeeds = [2]maphash.Seed{maphash.MakeSeed(), maphash.MakeSeed()}

func sumText(b []byte) textSum {
	return textSum{maphash.Bytes(textSeeds[0], b), maphash.Bytes(textSeeds[1], b)}
}

// blockSum is the sum of a block of a policy's text, as its fingerprint
// takes it and a streamed file's later reads must match it: never zero, so
// that zero can mean a block not read yet.
func blockSum(b []byte) textSum {
	s := sumText(b)
	s[0] |= 1
	return s
}

// writeTo writes the sum to h.
func (s textSum) writeTo(h hash.Hash) {
	var b [16]byte
	binary.LittleEndian.PutUint64(b[:8], s[0])
	binary.LittleEndian.PutUint64(b[8:], s[1])
	h.Write(b[:])
}
