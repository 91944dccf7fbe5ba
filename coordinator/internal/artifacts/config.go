package artifacts

import (
	"errors"
	"fmt"
	"strings"

	"github.com/minio/minio-go/v7/pkg/s3utils"
)

// Sizes in bytes.
const (
	MiB = 1 << 20
	GiB = 1 << 30
	TiB = 1 << 40
)

// DefaultBucket is the bucket artifacts go to unless configured otherwise.
const DefaultBucket = "outpost-artifacts"

// DefaultMaxSize is the largest artifact accepted unless configured otherwise.
const DefaultMaxSize = 16 * GiB

// maxObjectSize is S3's limit on one object.
const maxObjectSize = 5 * TiB

// Config says which S3-compatible file server holds the artifacts and with
// which credentials the coordinator writes to it. These credentials never
// leave the coordinator.
type Config struct {
	Endpoint  string `yaml:"endpoint"`   // host:port, no scheme
	AccessKey string `yaml:"access_key"` // may write the bucket and call STS AssumeRole
	SecretKey string `yaml:"secret_key"`
	Bucket    string `yaml:"bucket"`
	Secure    bool   `yaml:"secure"` // https
	Region    string `yaml:"region"` // empty: ask the server
	MaxSize   int64  `yaml:"max_size"`
}

// DefaultConfig is a Config with everything that has a default set.
func DefaultConfig() Config {
	return Config{Bucket: DefaultBucket, MaxSize: DefaultMaxSize}
}

// Validate says what is wrong with c, in words an operator can act on.
func (c Config) Validate() error {
	var errs []error
	switch {
	case c.Endpoint == "":
		errs = append(errs, errors.New("file server endpoint is empty; set it to the host:port of the S3-compatible server"))
	case strings.Contains(c.Endpoint, "://"):
		errs = append(errs, fmt.Errorf("file server endpoint %q has a scheme; write only host:port and set secure: true for https", c.Endpoint))
	case strings.ContainsAny(c.Endpoint, "/?#"):
		errs = append(errs, fmt.Errorf("file server endpoint %q has a path; write only host:port", c.Endpoint))
	}
	if c.AccessKey == "" || c.SecretKey == "" {
		errs = append(errs, errors.New("file server access_key and secret_key must both be set"))
	}
	if err := s3utils.CheckValidBucketNameStrict(c.Bucket); err != nil {
		errs = append(errs, fmt.Errorf("file server bucket %q is not a valid bucket name (%v); use 3 to 63 of a-z, 0-9, '-' and '.'", c.Bucket, err))
	}
	if c.MaxSize <= 0 || c.MaxSize > maxObjectSize {
		errs = append(errs, fmt.Errorf("file server max_size %d is out of range; set it between 1 and %d (5 TiB)", c.MaxSize, int64(maxObjectSize)))
	}
	return errors.Join(errs...)
}
