// Package apikey makes and recognizes keygate's own API keys and session
// tokens: kg_<id>_<secret><checksum>. The checksum lets a mistyped or forged
// key be refused before any lookup, and the fixed prefix lets secret scanners
// find leaked keys. Keys made elsewhere are valid too, by digest alone.
package apikey

import (
	"crypto/rand"
	"crypto/sha256"
	"fmt"
	"hash/crc32"
	"strings"

	"github.com/keygate/keygate/internal/policy"
)

const (
	// Prefix starts every key keygate makes.
	Prefix       = "kg_"
	idLen        = 8
	secretLen    = 32
	checksumLen  = 6
	base62       = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
	maxRandRetry = 256
)

// Digest is the SHA-256 of a presented credential, as the policy lists it.
// Credentials of usual length are hashed from a stack buffer: the Check path
// must not allocate.
func Digest(credential string) policy.Digest {
	if len(credential) <= 256 {
		var buf [256]byte
		return sha256.Sum256(append(buf[:0], credential...))
	}
	return sha256.Sum256([]byte(credential))
}

// NewID returns a fresh public key id such as kg_7Hq2pXa1.
func NewID() (string, error) {
	s, err := randomBase62(idLen)
	if err != nil {
		return "", err
	}
	return Prefix + s, nil
}

// New makes a key for the given public id (which must start with kg_ and
// hold no further '_').
func New(id string) (string, error) {
	if !strings.HasPrefix(id, Prefix) || strings.Contains(id[len(Prefix):], "_") || len(id) == len(Prefix) {
		return "", fmt.Errorf("key id %q must be kg_ followed by letters and digits", id)
	}
	secret, err := randomBase62(secretLen)
	if err != nil {
		return "", err
	}
	body := id + "_" + secret
	return body + checksum(body), nil
}

// Check tells whether a presented credential has keygate's format. For a kg_
// key it returns the id embedded in it and whether its checksum is right;
// anything else is "not ours" (ours false) and is looked up by digest alone.
func Check(key string) (id string, ours, valid bool) {
	if !strings.HasPrefix(key, Prefix) {
		return "", false, false
	}
	rest := key[len(Prefix):]
	sep := strings.IndexByte(rest, '_')
	if sep <= 0 {
		return "", true, false
	}
	tail := rest[sep+1:]
	if len(tail) != secretLen+checksumLen {
		return "", true, false
	}
	body := key[:len(key)-checksumLen]
	if !checksumEqual(body, key[len(key)-checksumLen:]) {
		return "", true, false
	}
	return key[:len(Prefix)+sep], true, true
}

var crcTable = crc32.MakeTable(crc32.IEEE)

// crc is CRC-32 (IEEE) over a string or bytes; hash/crc32 would need a
// []byte that escapes to the heap.
func crc[T ~string | ~[]byte](s T) uint32 {
	c := ^uint32(0)
	for i := 0; i < len(s); i++ {
		c = crcTable[byte(c)^s[i]] ^ (c >> 8)
	}
	return ^c
}

func checksum(body string) string {
	var out [checksumLen]byte
	encodeChecksum(&out, crc(body))
	return string(out[:])
}

func checksumEqual[T ~string | ~[]byte](body, sum T) bool {
	var want [checksumLen]byte
	encodeChecksum(&want, crc(body))
	if len(sum) != checksumLen {
		return false
	}
	for i := range want {
		if want[i] != sum[i] {
			return false
		}
	}
	return true
}

func encodeChecksum(out *[checksumLen]byte, v uint32) {
	for i := checksumLen - 1; i >= 0; i-- {
		out[i] = base62[v%62]
		v /= 62
	}
}

// randomBase62 draws n characters uniformly (rejection sampling, no modulo bias).
func randomBase62(n int) (string, error) {
	out := make([]byte, 0, n)
	buf := make([]byte, n*2)
	for tries := 0; len(out) < n; tries++ {
		if tries > maxRandRetry {
			return "", fmt.Errorf("random source keeps failing")
		}
		if _, err := rand.Read(buf); err != nil {
			return "", fmt.Errorf("read random: %w", err)
		}
		for _, b := range buf {
			if b < 248 && len(out) < n { // 248 = 4*62
				out = append(out, base62[b%62])
			}
		}
	}
	return string(out), nil
}
