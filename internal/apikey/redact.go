package apikey

import (
	"bytes"
	"strings"
)

// Redacted is what stands in for a key's secret in redacted text, after the
// key's public id: kg_7Hq2pXa1_***. It is the mask keygate's tools print.
const Redacted = "_***"

var prefixBytes = []byte(Prefix)

// Redact returns s with every key in it that verifies (the format and
// checksum Check accepts) replaced by its public id and Redacted, so a log
// reader can still tell which key leaked where. A key made elsewhere has no
// checksum and cannot be recognized: callers bound and mask such values
// themselves. Text without "kg_" is returned as it is, at the cost of one
// strings.Index.
func Redact(s string) string {
	if !strings.Contains(s, Prefix) || firstKey(s, Prefix, strings.Index, strings.IndexByte) < 0 {
		return s
	}
	return string(redactFrom([]byte(s)))
}

// RedactBytes is Redact for a byte slice. It returns b itself when b holds
// no key (no allocation), and a new slice otherwise.
func RedactBytes(b []byte) []byte {
	if !HasKey(b) {
		return b
	}
	return redactFrom(b)
}

// redactFrom replaces the keys of src, which holds at least one, in a copy.
func redactFrom(src []byte) []byte {
	out := make([]byte, 0, len(src))
	copied := 0
	for from := 0; ; {
		i := firstKey(src[from:], prefixBytes, bytes.Index, bytes.IndexByte)
		if i < 0 {
			break
		}
		start := from + i
		idEnd, end, _ := keyAt(src, start, bytes.IndexByte)
		// A key may start inside this one and end after it; leaving its
		// tail would print most of a secret.
		for k := start + 1; k < end; {
			j := bytes.Index(src[k:min(end+len(Prefix)-1, len(src))], prefixBytes)
			if j < 0 {
				break
			}
			if _, e, ok := keyAt(src, k+j, bytes.IndexByte); ok && e > end {
				end = e
			}
			k += j + 1
		}
		out = append(out, src[copied:start]...)
		out = append(out, src[start:idEnd]...)
		out = append(out, Redacted...)
		copied, from = end, end
	}
	out = append(out, src[copied:]...)
	// The text after a replacement can be chosen so that the replacement and
	// it verify as a new key (the checksum is no secret). Such text carries
	// no key of anyone's, but redacted output must hold none: break every
	// "kg_" so nothing in it can start a key.
	if firstKey(out, prefixBytes, bytes.Index, bytes.IndexByte) >= 0 {
		for i := 0; ; {
			j := bytes.Index(out[i:], prefixBytes)
			if j < 0 {
				break
			}
			out[i+j+len(Prefix)-1] = '-'
			i += j + len(Prefix)
		}
	}
	return out
}

// firstKey returns where the first key that verifies starts in s, or -1.
// prefix is Prefix; index and indexByte are the strings or bytes functions,
// so that strings and byte slices are searched without copies and with the
// fast searches.
func firstKey[T ~string | ~[]byte](s, prefix T, index func(T, T) int, indexByte func(T, byte) int) int {
	for from := 0; ; {
		i := index(s[from:], prefix)
		if i < 0 {
			return -1
		}
		if _, _, ok := keyAt(s, from+i, indexByte); ok {
			return from + i
		}
		from += i + 1
	}
}

// keyAt reports whether the text at s[i:], which starts with "kg_", starts
// with a key that verifies, and where the key's id and the key end. For a
// given start there is one candidate: the id runs to the next '_' and the
// secret and checksum are a fixed length after it, exactly as Check reads a
// whole key. Each candidate costs a search for '_' and one checksum.
func keyAt[T ~string | ~[]byte](s T, i int, indexByte func(T, byte) int) (idEnd, end int, ok bool) {
	sep := indexByte(s[i+len(Prefix):], '_')
	if sep <= 0 {
		return 0, 0, false
	}
	idEnd = i + len(Prefix) + sep
	end = idEnd + 1 + secretLen + checksumLen
	if end > len(s) {
		return 0, 0, false
	}
	return idEnd, end, checksumEqual(s[i:end-checksumLen], s[end-checksumLen:end])
}

// HasKey reports whether b holds a key that verifies, without allocating.
func HasKey(b []byte) bool { return firstKey(b, prefixBytes, bytes.Index, bytes.IndexByte) >= 0 }
