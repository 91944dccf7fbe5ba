package outpost

import (
	"go/parser"
	"go/token"
	"io/fs"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

const module = "github.com/outposthq/outpost/"

// forbidden says which parts each top-level directory may not import: the
// parts talk over the network, not through each other's code, and pkg/ is
// shared by them and so imports none of them.
var forbidden = map[string][]string{
	"agent":       {"coordinator", "relay"},
	"coordinator": {"agent", "relay"},
	"relay":       {"agent", "coordinator"},
	"plugins":     {"agent", "coordinator", "relay"},
	"pkg":         {"agent", "coordinator", "relay", "plugins/packages"},
	// The load generator runs real agents; it loads a coordinator over the
	// network like any fleet.
	"loadgen": {"coordinator", "relay"},
}

func TestImportBoundaries(t *testing.T) {
	fset := token.NewFileSet()
	checked := 0
	err := filepath.WalkDir(".", func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() && (strings.HasPrefix(d.Name(), ".") || d.Name() == "bin" || d.Name() == "testdata") && path != "." {
			return filepath.SkipDir
		}
		if d.IsDir() || !strings.HasSuffix(path, ".go") {
			return nil
		}
		part := strings.Split(filepath.ToSlash(path), "/")[0]
		rules := forbidden[part]
		f, err := parser.ParseFile(fset, path, nil, parser.ImportsOnly)
		if err != nil {
			return err
		}
		checked++
		for _, imp := range f.Imports {
			p, _ := strconv.Unquote(imp.Path.Value)
			rel, ok := strings.CutPrefix(p, module)
			if !ok {
				continue
			}
			for _, bad := range rules {
				if rel == bad || strings.HasPrefix(rel, bad+"/") {
					t.Errorf("%s imports %s: %s must not import %s", path, p, part, bad)
				}
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if checked < 20 {
		t.Fatalf("only %d Go files checked; is the walk broken?", checked)
	}
}
