// Package config loads a part's configuration in one order everywhere:
// the part's defaults, then a YAML file (unknown keys refused, with the
// line), then OUTPOST_* environment variables; flags are applied by the
// caller last. It knows no part's fields.
package config

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"reflect"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/outposthq/outpost/pkg/didyoumean"
	"gopkg.in/yaml.v3"
)

// MaxFileSize bounds a configuration file.
const MaxFileSize = 1 << 20

// Load fills cfg (a pointer to a struct already holding defaults) from the
// YAML file at path (skipped when path is empty) and then from environment
// variables named prefix + the upper-cased yaml path, e.g.
// OUTPOST_AGENT_DATA_DIR or OUTPOST_COORDINATOR_FILE_SERVER_ENDPOINT.
func Load(path string, cfg any, prefix string, env func(string) string) error {
	if path != "" {
		b, err := ReadFile(path)
		if err != nil {
			return err
		}
		if err := Decode(b, cfg); err != nil {
			return fmt.Errorf("config %s: %w", path, err)
		}
	}
	if env == nil {
		env = os.Getenv
	}
	return fromEnv(reflect.ValueOf(cfg).Elem(), prefix, env)
}

// ReadFile reads a configuration file of at most MaxFileSize bytes,
// reading no more than that of a larger one.
func ReadFile(path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("read config: %w", err)
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, MaxFileSize+1))
	if err != nil {
		return nil, fmt.Errorf("read config %s: %w", path, err)
	}
	if len(b) > MaxFileSize {
		return nil, fmt.Errorf("config %s is larger than %d bytes", path, MaxFileSize)
	}
	return b, nil
}

// Decode reads YAML into cfg (a pointer to a struct), refusing unknown
// fields, integers with a leading zero, settings without a value, and a
// second document.
func Decode(b []byte, cfg any) error {
	dec := yaml.NewDecoder(bytes.NewReader(b))
	dec.KnownFields(true)
	// An empty file is no settings, not an error.
	if err := dec.Decode(cfg); err != nil {
		if errors.Is(err, io.EOF) {
			return nil
		}
		return Explain(err, reflect.TypeOf(cfg).Elem())
	}
	// Settings after a "---" would be ignored without a word.
	var next yaml.Node
	if err := dec.Decode(&next); err == nil {
		if next.Kind != 0 && !(len(next.Content) == 1 && next.Content[0].ShortTag() == "!!null") {
			return fmt.Errorf("line %d: a second YAML document begins here (---): put every setting in one", next.Line)
		}
	} else if !errors.Is(err, io.EOF) {
		return err
	}
	var doc yaml.Node
	if err := yaml.NewDecoder(bytes.NewReader(b)).Decode(&doc); err != nil {
		return err
	}
	return checkInts(&doc, reflect.TypeOf(cfg).Elem())
}

// leadingZero is an integer YAML reads in octal ("010" is 8), where the
// environment and the flags read it in decimal (10).
var leadingZero = regexp.MustCompile(`^[-+]?0[0-9_]+$`)

// checkInts refuses, in the YAML node n decoded into a value of type t,
// an integer setting written with a leading zero: the file and the
// environment would read it differently; and a setting of one value
// written without one, which YAML reads as null and leaves at its default.
func checkInts(n *yaml.Node, t reflect.Type) error {
	if n.Kind == yaml.AliasNode {
		n = n.Alias
	}
	switch {
	case n.Kind == yaml.DocumentNode:
		for _, c := range n.Content {
			if err := checkInts(c, t); err != nil {
				return err
			}
		}
	case n.Kind == yaml.MappingNode && t.Kind() == reflect.Struct:
		for i := 0; i+1 < len(n.Content); i += 2 {
			k, v := n.Content[i], n.Content[i+1]
			if k.ShortTag() == "!!merge" {
				if err := checkMerge(v, t); err != nil {
					return err
				}
				continue
			}
			for j := range t.NumField() {
				if strings.Split(t.Field(j).Tag.Get("yaml"), ",")[0] == k.Value {
					if err := checkInts(v, t.Field(j).Type); err != nil {
						return err
					}
				}
			}
		}
	case n.Kind == yaml.ScalarNode && t.Kind() >= reflect.Int && t.Kind() <= reflect.Uint64 &&
		n.ShortTag() == "!!int" && leadingZero.MatchString(n.Value):
		return fmt.Errorf("line %d: %s: write the number without its leading zero (YAML reads it in octal)", n.Line, n.Value)
	case n.Kind == yaml.ScalarNode && n.ShortTag() == "!!null" &&
		(t.Kind() >= reflect.Bool && t.Kind() <= reflect.Float64 || t.Kind() == reflect.String):
		// YAML reads "key:" as null, which leaves the default in place:
		// "https_addr:" written to turn it off would keep it on.
		return fmt.Errorf(`line %d: a setting without a value would keep its default: write "" (or 0, false) for none, or remove the line`, n.Line)
	}
	return nil
}

// checkMerge checks what a merge key ("<<: *defaults") brings into a
// mapping of type t.
func checkMerge(v *yaml.Node, t reflect.Type) error {
	if v.Kind == yaml.AliasNode {
		v = v.Alias
	}
	if v.Kind == yaml.SequenceNode {
		for _, c := range v.Content {
			if err := checkInts(c, t); err != nil {
				return err
			}
		}
		return nil
	}
	return checkInts(v, t)
}

var durationType = reflect.TypeOf(time.Duration(0))

func fromEnv(v reflect.Value, prefix string, env func(string) string) error {
	t := v.Type()
	for i := range t.NumField() {
		f := t.Field(i)
		tag := strings.Split(f.Tag.Get("yaml"), ",")[0]
		if tag == "" || tag == "-" || !f.IsExported() {
			continue
		}
		name := prefix + "_" + strings.ToUpper(tag)
		fv := v.Field(i)
		if f.Type.Kind() == reflect.Struct {
			if err := fromEnv(fv, name, env); err != nil {
				return err
			}
			continue
		}
		s := env(name)
		if s == "" {
			continue
		}
		if err := set(fv, s); err != nil {
			return fmt.Errorf("environment %s: %w", name, err)
		}
	}
	return nil
}

func set(fv reflect.Value, s string) error {
	switch {
	case fv.Type() == durationType:
		d, err := time.ParseDuration(s)
		if err != nil {
			return err
		}
		fv.SetInt(int64(d))
	case fv.Kind() == reflect.String:
		fv.SetString(s)
	case fv.Kind() == reflect.Bool:
		b, err := strconv.ParseBool(s)
		if err != nil {
			return err
		}
		fv.SetBool(b)
	case fv.Kind() >= reflect.Int && fv.Kind() <= reflect.Int64:
		n, err := strconv.ParseInt(s, 10, fv.Type().Bits())
		if err != nil {
			return err
		}
		fv.SetInt(n)
	case fv.Kind() >= reflect.Uint && fv.Kind() <= reflect.Uint64:
		n, err := strconv.ParseUint(s, 10, fv.Type().Bits())
		if err != nil {
			return err
		}
		fv.SetUint(n)
	case fv.Kind() == reflect.Slice && fv.Type().Elem().Kind() == reflect.String:
		parts := strings.Split(s, ",")
		for i := range parts {
			parts[i] = strings.TrimSpace(parts[i])
		}
		fv.Set(reflect.ValueOf(parts))
	default:
		return fmt.Errorf("unsupported type %s", fv.Type())
	}
	return nil
}

// yamlError matches the messages of yaml.v3's *yaml.TypeError.
var (
	unknownField = regexp.MustCompile(`^line (\d+): field (.+) not found in type \S+$`)
	wrongType    = regexp.MustCompile("^line (\\d+): cannot unmarshal !!\\w+ `(.*)` into (\\S+)$")
	wrongKind    = regexp.MustCompile(`^line (\d+): cannot unmarshal !!(seq|map) into (\S+)$`)
)

// Explain rewrites yaml.v3's errors decoding into a value of type t, which
// name Go types ("field roots not found in type agent.Config"), in the
// words of the file: the unknown key with the nearest known one, the value
// and what is wanted instead. Other errors are returned as they are.
func Explain(err error, t reflect.Type) error {
	var te *yaml.TypeError
	if !errors.As(err, &te) {
		return err
	}
	keys := yamlKeys(t, nil)
	var out []string
	for _, e := range te.Errors {
		if m := unknownField.FindStringSubmatch(e); m != nil {
			out = append(out, fmt.Sprintf("line %s: unknown key %q%s", m[1], m[2], didyoumean.Hint(m[2], keys)))
			continue
		}
		if m := wrongType.FindStringSubmatch(e); m != nil {
			out = append(out, fmt.Sprintf("line %s: %q is not %s", m[1], m[2], wanted(m[3])))
			continue
		}
		if m := wrongKind.FindStringSubmatch(e); m != nil {
			what := map[string]string{"seq": "a list", "map": "a mapping"}[m[2]]
			out = append(out, fmt.Sprintf("line %s: %s is not %s", m[1], what, wanted(m[3])))
			continue
		}
		out = append(out, e)
	}
	return errors.New(strings.Join(out, "; "))
}

// wanted names a Go type as a setting's value.
func wanted(goType string) string {
	switch {
	case goType == "time.Duration", strings.HasSuffix(goType, ".Duration"):
		return "a duration: write one such as 30s, 5m or 2h"
	case goType == "bool":
		return "true or false"
	case strings.HasPrefix(goType, "int"), strings.HasPrefix(goType, "uint"):
		return "a whole number"
	case strings.HasPrefix(goType, "float"):
		return "a number"
	case goType == "string":
		return "text"
	case strings.HasPrefix(goType, "[]"):
		return "a list"
	case strings.HasPrefix(goType, "map["):
		return "a mapping of keys to values"
	}
	return "a value of the right kind here (see the example configuration)"
}

// yamlKeys lists the yaml keys of a struct type and of the structs in it.
func yamlKeys(t reflect.Type, into []string) []string {
	for t.Kind() == reflect.Pointer || t.Kind() == reflect.Slice || t.Kind() == reflect.Map {
		t = t.Elem()
	}
	if t.Kind() != reflect.Struct {
		return into
	}
	for i := range t.NumField() {
		f := t.Field(i)
		name, _, _ := strings.Cut(f.Tag.Get("yaml"), ",")
		if name == "-" || !f.IsExported() {
			continue
		}
		if name != "" {
			into = append(into, name)
		}
		into = yamlKeys(f.Type, into)
	}
	return into
}
