package auth

import (
	"crypto/rand"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"fmt"
	"strings"

	"golang.org/x/crypto/argon2"
)

// KDF are the Argon2id parameters new password hashes are made with. A
// stored hash carries its own, so they can be raised without a migration.
type KDF struct {
	Time      uint32 `yaml:"time"`
	MemoryKiB uint32 `yaml:"memory_kib"`
	Threads   uint8  `yaml:"threads"`
}

// DefaultKDF follows the OWASP recommendation for Argon2id with a margin.
func DefaultKDF() KDF { return KDF{Time: 2, MemoryKiB: 64 * 1024, Threads: 1} }

// WithDefaults is k with each parameter left at zero taken from
// DefaultKDF, so a config may raise one and keep the others.
func (k KDF) WithDefaults() KDF {
	d := DefaultKDF()
	if k.Time == 0 {
		k.Time = d.Time
	}
	if k.MemoryKiB == 0 {
		k.MemoryKiB = d.MemoryKiB
	}
	if k.Threads == 0 {
		k.Threads = d.Threads
	}
	return k
}

// Validate checks that k can hash a password in reasonable time and memory
// (after WithDefaults, every parameter is set).
func (k KDF) Validate() error {
	var errs []error
	if k.Time < 1 || k.Time > 64 {
		errs = append(errs, fmt.Errorf("time %d: want 1 to 64 passes", k.Time))
	}
	if k.MemoryKiB < 1024 || k.MemoryKiB > 4<<20 {
		errs = append(errs, fmt.Errorf("memory_kib %d: want 1024 (1 MiB) to 4194304 (4 GiB)", k.MemoryKiB))
	}
	if k.Threads < 1 || k.Threads > 64 {
		errs = append(errs, fmt.Errorf("threads %d: want 1 to 64", k.Threads))
	}
	return errors.Join(errs...)
}

const (
	saltLen = 16
	keyLen  = 32
	// Passwords longer than this are refused before hashing: hashing cost
	// does not grow with length, but nothing legitimate needs more.
	maxPasswordLen = 1024
	minPasswordLen = 10
)

var errBadHash = errors.New("stored password hash is damaged")

// HashPassword returns the PHC-style Argon2id encoding of password.
func HashPassword(password string, k KDF) (string, error) {
	if err := CheckPassword(password); err != nil {
		return "", err
	}
	salt := make([]byte, saltLen)
	if _, err := rand.Read(salt); err != nil {
		return "", fmt.Errorf("password salt: %w", err)
	}
	sum := argon2.IDKey([]byte(password), salt, k.Time, k.MemoryKiB, k.Threads, keyLen)
	return fmt.Sprintf("$argon2id$v=%d$m=%d,t=%d,p=%d$%s$%s", argon2.Version, k.MemoryKiB, k.Time, k.Threads,
		base64.RawStdEncoding.EncodeToString(salt), base64.RawStdEncoding.EncodeToString(sum)), nil
}

// CheckPassword says what is wrong with a new password.
func CheckPassword(password string) error {
	switch {
	case len(password) < minPasswordLen:
		return fmt.Errorf("password is too short: use at least %d characters", minPasswordLen)
	case len(password) > maxPasswordLen:
		return fmt.Errorf("password is too long: use at most %d characters", maxPasswordLen)
	}
	return nil
}

// VerifyPassword reports whether password matches the encoded hash.
func VerifyPassword(encoded, password string) (bool, error) {
	if len(password) > maxPasswordLen {
		return false, nil
	}
	parts := strings.Split(encoded, "$")
	if len(parts) != 6 || parts[1] != "argon2id" {
		return false, errBadHash
	}
	var version int
	if _, err := fmt.Sscanf(parts[2], "v=%d", &version); err != nil || version != argon2.Version {
		return false, errBadHash
	}
	var k KDF
	if _, err := fmt.Sscanf(parts[3], "m=%d,t=%d,p=%d", &k.MemoryKiB, &k.Time, &k.Threads); err != nil {
		return false, errBadHash
	}
	// As many passes as a config may ask for (KDF.Validate): a hash made
	// with them must verify.
	if k.Time == 0 || k.Time > 64 || k.MemoryKiB < 8 || k.MemoryKiB > 4<<20 || k.Threads == 0 {
		return false, errBadHash
	}
	salt, err := base64.RawStdEncoding.DecodeString(parts[4])
	if err != nil {
		return false, errBadHash
	}
	want, err := base64.RawStdEncoding.DecodeString(parts[5])
	if err != nil || len(want) == 0 {
		return false, errBadHash
	}
	got := argon2.IDKey([]byte(password), salt, k.Time, k.MemoryKiB, k.Threads, uint32(len(want)))
	return subtle.ConstantTimeCompare(got, want) == 1, nil
}
