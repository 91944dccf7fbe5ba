package api

import (
	"bufio"
	"go/ast"
	"go/parser"
	gotoken "go/token"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/outposthq/outpost/coordinator/internal/store"
	"github.com/outposthq/outpost/pkg/logging"
	"github.com/outposthq/outpost/pkg/testutil"
)

// servedElsewhere are routes docs/api.md lists that this package does not
// serve, with who does. Each must stay documented and unserved here, so
// that the list cannot outlive its reason.
var servedElsewhere = map[string]string{
	"GET /": "the coordinator's listener (coordinator.go) redirects it to the web console",
}

// TestDocsListEveryRoute keeps docs/api.md and the routes New registers in
// step: a route added without a table row, or a row left behind by a route
// that went, fails here naming it.
//
// The registered routes are read from this package's source (string keys of
// maps of handlers, and mux.Handle/HandleFunc calls with a literal pattern),
// since a ServeMux cannot list its patterns; the live mux then confirms each
// one, so that a map that New no longer wires in does not count as served.
func TestDocsListEveryRoute(t *testing.T) {
	registered := sourceRoutes(t, ".")
	if len(registered) < 20 {
		// A test that finds nothing would pass whatever the docs say.
		t.Fatalf("found only %d routes in the source; has registration changed shape?", len(registered))
	}
	documented := docRoutes(t, filepath.Join(testutil.RepoRoot(t), "docs", "api.md"))

	st, err := store.Open(filepath.Join(t.TempDir(), "db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	reg := prometheus.NewRegistry()
	a, err := New(Deps{Store: st, Gatherer: reg, Logger: logging.Discard()}, reg)
	if err != nil {
		t.Fatal(err)
	}
	served := func(route string) string {
		method, path, _ := strings.Cut(route, " ")
		_, pattern := a.mux.Handler(httptest.NewRequest(method, samplePath(path), nil))
		return pattern
	}

	var problems []string
	byShape := map[string]string{}
	for route, where := range registered {
		if got := served(route); got != route {
			problems = append(problems, where+": "+route+" is in the source but not served (a request to it reaches "+strconv.Quote(got)+"): dead code?")
			continue
		}
		byShape[routeShape(route)] = route
	}
	docShapes := map[string]bool{}
	for _, d := range documented {
		shape := routeShape(d.route)
		if docShapes[shape] {
			problems = append(problems, d.where+": "+d.route+" is documented twice")
		}
		docShapes[shape] = true
		if why, ok := servedElsewhere[shape]; ok {
			if _, here := byShape[shape]; here {
				problems = append(problems, d.where+": "+d.route+" is listed as served elsewhere ("+why+") but this package registers it: drop it from servedElsewhere")
			}
			continue
		}
		if _, ok := byShape[shape]; !ok {
			problems = append(problems, d.where+": "+d.route+" is documented but not registered (a request to it reaches "+strconv.Quote(served(d.route))+")")
		}
	}
	for shape := range servedElsewhere {
		if !docShapes[shape] {
			problems = append(problems, "servedElsewhere names "+shape+", which docs/api.md does not list: drop it")
		}
	}
	for shape, route := range byShape {
		if !docShapes[shape] {
			problems = append(problems, registered[route]+": "+route+" is registered but not documented in docs/api.md")
		}
	}
	sort.Strings(problems)
	for _, p := range problems {
		t.Error(p)
	}
}

// routeMethod is the method a ServeMux pattern or a documented route starts
// with.
var routeMethod = regexp.MustCompile(`^(GET|HEAD|POST|PUT|PATCH|DELETE|OPTIONS) /`)

// sourceRoutes are the method-qualified patterns this package's non-test
// source registers, each with the file and line it is at. Patterns without
// a method (the "/v1/" catch-all that answers 404) are not API calls.
func sourceRoutes(t *testing.T, dir string) map[string]string {
	t.Helper()
	fset := gotoken.NewFileSet()
	files, err := filepath.Glob(filepath.Join(dir, "*.go"))
	if err != nil {
		t.Fatal(err)
	}
	routes := map[string]string{}
	add := func(e ast.Expr) {
		lit, ok := e.(*ast.BasicLit)
		if !ok || lit.Kind != gotoken.STRING {
			return
		}
		s, err := strconv.Unquote(lit.Value)
		if err != nil || !routeMethod.MatchString(s) {
			return
		}
		p := fset.Position(lit.Pos())
		routes[s] = filepath.Base(p.Filename) + ":" + strconv.Itoa(p.Line)
	}
	for _, name := range files {
		if strings.HasSuffix(name, "_test.go") {
			continue
		}
		f, err := parser.ParseFile(fset, name, nil, parser.SkipObjectResolution)
		if err != nil {
			t.Fatal(err)
		}
		ast.Inspect(f, func(n ast.Node) bool {
			switch n := n.(type) {
			case *ast.CompositeLit:
				// Route tables: map[string]func(http.ResponseWriter, *http.Request) error.
				m, ok := n.Type.(*ast.MapType)
				if !ok {
					return true
				}
				if _, ok := m.Value.(*ast.FuncType); !ok {
					return true
				}
				for _, el := range n.Elts {
					if kv, ok := el.(*ast.KeyValueExpr); ok {
						add(kv.Key)
					}
				}
			case *ast.CallExpr:
				sel, ok := n.Fun.(*ast.SelectorExpr)
				if ok && (sel.Sel.Name == "Handle" || sel.Sel.Name == "HandleFunc") && len(n.Args) == 2 {
					add(n.Args[0])
				}
			}
			return true
		})
	}
	return routes
}

type docRoute struct {
	route string // "METHOD /path", without a query
	where string // api.md:LINE
}

// docRoutes are the routes of docs/api.md's tables: rows whose first cell
// is a backquoted "METHOD /path", the path without its query ("?a=b" or an
// optional "[?a=b]").
func docRoutes(t *testing.T, path string) []docRoute {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var routes []docRoute
	sc := bufio.NewScanner(f)
	sc.Buffer(nil, 1<<20)
	for n := 1; sc.Scan(); n++ {
		line := sc.Text()
		if !strings.HasPrefix(line, "| `") {
			continue
		}
		cell, _, _ := strings.Cut(strings.TrimPrefix(line, "| `"), "`")
		if !routeMethod.MatchString(cell) {
			continue
		}
		if i := strings.IndexAny(cell, "?["); i >= 0 {
			cell = cell[:i]
		}
		routes = append(routes, docRoute{route: cell, where: "api.md:" + strconv.Itoa(n)})
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	if len(routes) < 20 {
		t.Fatalf("%s: found only %d documented routes; has the table format changed?", path, len(routes))
	}
	return routes
}

var wildcard = regexp.MustCompile(`\{[^}]*\}`)

// routeShape compares routes whatever their parameters are called:
// "GET /v1/hosts/{id}/permissions" and ".../{host}/..." are one route to a
// ServeMux. "{$}" (the exact path) is written as the bare path in the docs.
func routeShape(route string) string {
	route = strings.ReplaceAll(route, "{$}", "")
	return wildcard.ReplaceAllString(route, "{}")
}

// samplePath is a path that a pattern's wildcards match.
func samplePath(pattern string) string {
	return wildcard.ReplaceAllStringFunc(pattern, func(w string) string {
		if w == "{$}" {
			return ""
		}
		return "sample-0" // no literal segment is called so
	})
}
