//go:build windows

package registry

import (
	"errors"
	"fmt"
	"io"
	"strings"

	"golang.org/x/sys/windows/registry"
)

// registrySupported is whether this build manages the Windows registry.
const registrySupported = true

// winBackend keeps values in the Windows registry. The plugin's root does
// not apply to it: there is one registry per host.
type winBackend struct{}

func newRegistryBackend() (backend, error) { return winBackend{}, nil }

// splitKey turns HKLM\SOFTWARE\Vendor into the predefined key and the path
// below it.
func splitKey(p string) (registry.Key, string, error) {
	root, rest, _ := strings.Cut(p, `\`)
	var k registry.Key
	switch strings.ToUpper(root) {
	case "HKLM", "HKEY_LOCAL_MACHINE":
		k = registry.LOCAL_MACHINE
	case "HKCU", "HKEY_CURRENT_USER":
		k = registry.CURRENT_USER
	case "HKU", "HKEY_USERS":
		k = registry.USERS
	case "HKCR", "HKEY_CLASSES_ROOT":
		k = registry.CLASSES_ROOT
	case "HKCC", "HKEY_CURRENT_CONFIG":
		k = registry.CURRENT_CONFIG
	default:
		return 0, "", fmt.Errorf("registry key %s does not start with HKLM, HKCU, HKU, HKCR or HKCC", p)
	}
	if rest == "" {
		return 0, "", fmt.Errorf("registry key %s is a whole hive; name a key below it", p)
	}
	return k, rest, nil
}

func (winBackend) open(s spec, access uint32) (registry.Key, bool, error) {
	hive, sub, err := splitKey(s.path)
	if err != nil {
		return 0, false, err
	}
	k, err := registry.OpenKey(hive, sub, access)
	if errors.Is(err, registry.ErrNotExist) {
		return 0, false, nil
	}
	if err != nil {
		return 0, false, fmt.Errorf("open %s: %w", s.path, err)
	}
	return k, true, nil
}

func (b winBackend) exists(s spec) (bool, error) {
	k, ok, err := b.open(s, registry.QUERY_VALUE)
	if ok {
		k.Close()
	}
	return ok, err
}

func readValue(k registry.Key, name string) (value, bool, error) {
	_, typ, err := k.GetValue(name, nil)
	if errors.Is(err, registry.ErrNotExist) {
		return value{}, false, nil
	}
	if err != nil {
		return value{}, false, err
	}
	switch typ {
	case registry.SZ, registry.EXPAND_SZ:
		v, _, err := k.GetStringValue(name)
		return value{Type: TypeString, Data: []string{v}}, true, err
	case registry.DWORD, registry.QWORD:
		n, _, err := k.GetIntegerValue(name)
		t := TypeDword
		if typ == registry.QWORD {
			t = TypeQword
		}
		return value{Type: t, Data: []string{fmt.Sprint(n)}}, true, err
	case registry.MULTI_SZ:
		v, _, err := k.GetStringsValue(name)
		return value{Type: TypeMultiString, Data: v}, true, err
	}
	return value{}, true, fmt.Errorf("value %s has registry type %d, which the plugin does not manage", name, typ)
}

func writeValue(k registry.Key, name string, v value) error {
	switch v.Type {
	case TypeString:
		return k.SetStringValue(name, v.Data[0])
	case TypeDword:
		n, err := parseNumber(v.Data[0], 32)
		if err != nil {
			return err
		}
		return k.SetDWordValue(name, uint32(n))
	case TypeQword:
		n, err := parseNumber(v.Data[0], 64)
		if err != nil {
			return err
		}
		return k.SetQWordValue(name, n)
	case TypeMultiString:
		return k.SetStringsValue(name, v.Data)
	}
	return fmt.Errorf("type %q is not known", v.Type)
}

func (b winBackend) getValue(s spec) (value, bool, error) {
	k, ok, err := b.open(s, registry.QUERY_VALUE)
	if err != nil || !ok {
		return value{}, false, err
	}
	defer k.Close()
	return readValue(k, s.name)
}

func (b winBackend) setValue(s spec, v value) error {
	hive, sub, err := splitKey(s.path)
	if err != nil {
		return err
	}
	k, _, err := registry.CreateKey(hive, sub, registry.SET_VALUE)
	if err != nil {
		return fmt.Errorf("create %s: %w", s.path, err)
	}
	defer k.Close()
	return writeValue(k, s.name, v)
}

func (b winBackend) deleteValue(s spec) (bool, error) {
	k, ok, err := b.open(s, registry.SET_VALUE)
	if err != nil || !ok {
		return false, err
	}
	defer k.Close()
	err = k.DeleteValue(s.name)
	if errors.Is(err, registry.ErrNotExist) {
		return false, nil
	}
	return err == nil, err
}

func (b winBackend) snapshotKey(s spec) (*keySnapshot, error) {
	k, ok, err := b.open(s, registry.QUERY_VALUE|registry.ENUMERATE_SUB_KEYS)
	if err != nil || !ok {
		return nil, err
	}
	defer k.Close()
	if subs, err := k.ReadSubKeyNames(1); err == nil && len(subs) > 0 {
		return nil, fmt.Errorf("key %s has subkeys; delete_key removes only keys without subkeys, so that it can restore them", s.path)
	}
	names, err := k.ReadValueNames(-1)
	if err != nil {
		return nil, fmt.Errorf("list the values of %s: %w", s.path, err)
	}
	snap := &keySnapshot{}
	for _, n := range names {
		v, ok, err := readValue(k, n)
		if err != nil {
			return nil, fmt.Errorf("read %s\\%s: %w", s.path, n, err)
		}
		if ok {
			snap.Values = append(snap.Values, namedValue{Name: n, Value: v})
		}
	}
	return snap, nil
}

func (b winBackend) deleteKey(s spec) error {
	hive, sub, err := splitKey(s.path)
	if err != nil {
		return err
	}
	if err := registry.DeleteKey(hive, sub); err != nil && !errors.Is(err, registry.ErrNotExist) {
		return fmt.Errorf("delete %s: %w", s.path, err)
	}
	return nil
}

func (b winBackend) restoreKey(s spec, snap *keySnapshot) error {
	hive, sub, err := splitKey(s.path)
	if err != nil {
		return err
	}
	k, _, err := registry.CreateKey(hive, sub, registry.SET_VALUE)
	if err != nil {
		return fmt.Errorf("create %s: %w", s.path, err)
	}
	defer k.Close()
	for _, nv := range snap.Values {
		if err := writeValue(k, nv.Name, nv.Value); err != nil {
			return fmt.Errorf("restore %s\\%s: %w", s.path, nv.Name, err)
		}
	}
	return nil
}

func (b winBackend) removeIfEmpty(s spec) error {
	k, ok, err := b.open(s, registry.QUERY_VALUE|registry.ENUMERATE_SUB_KEYS)
	if err != nil || !ok {
		return err
	}
	names, err1 := k.ReadValueNames(1)
	subs, err2 := k.ReadSubKeyNames(1)
	k.Close()
	if (err1 != nil && !errors.Is(err1, io.EOF)) || (err2 != nil && !errors.Is(err2, io.EOF)) || len(names) > 0 || len(subs) > 0 {
		return nil
	}
	return b.deleteKey(s)
}
