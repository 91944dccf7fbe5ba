package config

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"strconv"
)

// decimal is a flag.Value for a signed integer read in base 10 only. The
// flag package's own integer flags take Go's prefixes, so "--uses 010"
// would mean 8 there while OUTPOST_* variables read 10 (and a YAML file,
// which would read 8, refuses it: Decode).
type decimal[T int | int64] struct{ p *T }

func (d decimal[T]) String() string {
	if d.p == nil {
		return "0"
	}
	return strconv.FormatInt(int64(*d.p), 10)
}

func (d decimal[T]) Set(s string) error {
	var zero T
	bits := 64
	if _, ok := any(zero).(int); ok {
		bits = strconv.IntSize
	}
	n, err := strconv.ParseInt(s, 10, bits)
	if err != nil {
		if errors.Is(err, strconv.ErrRange) {
			return errOutOfRange
		}
		return errNotDecimal
	}
	*d.p = T(n)
	return nil
}

type flagError string

func (e flagError) Error() string { return string(e) }

const (
	errNotDecimal flagError = "not a whole number in decimal"
	errOutOfRange flagError = "value out of range"
)

// IntVar defines an int flag read in decimal, as the flag package's IntVar.
func IntVar(fs *flag.FlagSet, p *int, name string, value int, usage string) {
	*p = value
	fs.Var(decimal[int]{p}, name, usage)
}

// Int64Var defines an int64 flag read in decimal.
func Int64Var(fs *flag.FlagSet, p *int64, name string, value int64, usage string) {
	*p = value
	fs.Var(decimal[int64]{p}, name, usage)
}

// Int defines an int flag read in decimal and returns where it is stored.
func Int(fs *flag.FlagSet, name string, value int, usage string) *int {
	p := new(int)
	IntVar(fs, p, name, value, usage)
	return p
}

// ParseFlags parses args into fs for a command's main. -h prints the
// usage and reports help; a mistake is returned alone, pointing to -h,
// rather than printed beside the whole usage and then once more by main.
func ParseFlags(fs *flag.FlagSet, args []string) (help bool, err error) {
	out := fs.Output()
	fs.SetOutput(io.Discard)
	err = fs.Parse(args)
	fs.SetOutput(out)
	switch {
	case errors.Is(err, flag.ErrHelp):
		fs.Usage()
		return true, nil
	case err != nil:
		return false, fmt.Errorf("%w (see %s -h)", err, fs.Name())
	}
	return false, nil
}
