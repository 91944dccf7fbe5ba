package cli

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"hash"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
)

// pushBody is an upload's body: it hashes and counts what the transport
// reads and feeds the progress. The transport reads on its own goroutine and
// may still hold the body after the answer came, hence the lock.
type pushBody struct {
	mu     sync.Mutex
	r      io.Reader
	hash   hash.Hash
	n      int64
	p      *progress
	closed bool
}

func (b *pushBody) Read(buf []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed {
		return 0, errors.New("upload ended")
	}
	n, err := b.r.Read(buf)
	b.hash.Write(buf[:n])
	b.n += int64(n)
	b.p.add(n)
	return n, err
}

// done stops the body and returns what was read of it.
func (b *pushBody) done() (sha string, n int64) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.closed = true
	return hex.EncodeToString(b.hash.Sum(nil)), b.n
}

func artifactCommands() []*command {
	return []*command{
		{
			name: "artifact push", args: "FILE", minArgs: 1, maxArgs: 1,
			summary: "upload a file as an artifact and print its SHA-256",
			help: `The file is streamed to the coordinator, which passes it on to the file
server; it is never read whole into memory. FILE - reads standard input and
needs --name. Progress goes to standard error. In table mode the SHA-256 is
printed alone on standard output, so a script can keep it for a policy's
"artifact:" field. There is no time limit unless --timeout is given.

Examples:
  outpost artifact push hello-1.0.0.tar.gz
  SHA=$(outpost artifact push --quiet build/hello-1.0.0.tar.gz)
  make-package | outpost artifact push - --name hello-1.0.1.tar.gz
`,
			setup: func(fs *flag.FlagSet) runFunc {
				name := fs.String("name", "", "the artifact's `NAME` (default: the file's base name)")
				quiet := fs.Bool("quiet", false, "print no progress or details, only the result")
				return func(ctx context.Context, e *env, args []string) error {
					return pushArtifact(ctx, e, args[0], *name, *quiet)
				}
			},
		},
		{
			name: "artifact list", maxArgs: 0,
			summary: "list uploaded artifacts",
			timeout: defaultTimeout,
			help: `Examples:
  outpost artifact list
`,
			setup: func(fs *flag.FlagSet) runFunc {
				return func(ctx context.Context, e *env, args []string) error {
					raw, err := e.api.get(ctx, "/v1/artifacts", nil)
					if err != nil {
						return err
					}
					if e.json {
						return writeJSON(e.stdout, raw)
					}
					var list struct {
						Artifacts []artifact `json:"artifacts"`
					}
					if err := decode(raw, "artifact list", &list); err != nil {
						return err
					}
					if len(list.Artifacts) == 0 {
						_, err := fmt.Fprintln(e.stderr, "no artifacts yet; upload one with: outpost artifact push FILE")
						return err
					}
					rows := make([][]string, 0, len(list.Artifacts))
					for _, a := range list.Artifacts {
						rows = append(rows, []string{a.SHA256, byteSize(a.Size), a.Name, ago(e.now(), a.Uploaded.Time)})
					}
					return writeTable(e.stdout, []string{"SHA256", "SIZE", "NAME", "UPLOADED"}, rows)
				}
			},
		},
		{
			name: "artifact show", args: "SHA256|NAME", minArgs: 1, maxArgs: 1,
			summary: "show an artifact",
			timeout: defaultTimeout,
			help: `SHA256 is the 64 hex digits printed by 'artifact push' and 'artifact list', or
their start from 8 digits on when no other artifact's starts so. NAME is the
artifact's name, when one artifact alone has it.

Examples:
  outpost artifact show 2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824
  outpost artifact show 2cf24dba
  outpost artifact show hello-1.0.0.tar.gz
`,
			setup: func(fs *flag.FlagSet) runFunc {
				return func(ctx context.Context, e *env, args []string) error {
					sha, err := resolveArtifact(ctx, e, args[0])
					if err != nil {
						return err
					}
					raw, err := e.api.get(ctx, "/v1/artifacts/"+sha, nil)
					if err != nil {
						return err
					}
					if e.json {
						return writeJSON(e.stdout, raw)
					}
					var a artifact
					if err := decode(raw, "artifact", &a); err != nil {
						return err
					}
					chunks := "none (fetched whole; push it again to add chunks)"
					if a.Chunks > 0 {
						chunks = strconv.Itoa(a.Chunks)
					}
					if err := writeFields(e.stdout, [][2]string{
						{"sha256", a.SHA256},
						{"name", a.Name},
						{"size", byteSize(a.Size) + " (" + strconv.FormatInt(a.Size, 10) + " bytes)"},
						{"uploaded", timeAndAge(e.now(), a.Uploaded.Time)},
						{"chunks", chunks},
					}); err != nil {
						return err
					}
					if a.Fetched == nil || a.Fetched.Total.Agents == 0 {
						_, err := fmt.Fprintln(e.stdout, "\nno agent has reported fetching it yet")
						return err
					}
					fmt.Fprintln(e.stdout)
					rows := [][]string{}
					for _, o := range append(a.Fetched.Offices, a.Fetched.Total) {
						name := o.Office
						if name == "" {
							name = "(all)"
						}
						rows = append(rows, []string{name, strconv.Itoa(o.Agents), byteSize(o.Peer), byteSize(o.Relay), byteSize(o.FileServer),
							fmt.Sprintf("%.1f%%", o.HitRatio*100), fmt.Sprintf("%.1f%%", o.PeerRatio*100), byteSize(o.Served), strconv.FormatInt(o.BadChunks, 10)})
					}
					return writeTable(e.stdout, []string{"OFFICE", "AGENTS", "PEER", "RELAY", "FILE SERVER", "HIT RATIO", "FROM PEERS", "SERVED TO PEERS", "BAD CHUNKS"}, rows)
				}
			},
		},
		{
			name: "artifact rm", args: "SHA256|NAME", minArgs: 1, maxArgs: 1,
			summary: "remove an artifact that nothing uses: its record and its bytes on the file server",
			timeout: defaultTimeout,
			help: `The coordinator refuses while anything names the artifact: an office's
policy, a named policy, a patch of the catalog, or a revision that an office's
agents are still told (a distribution office's release waiting for its
relay); the error lists them. Take it out of those first (apply the policies
without it, import the patch with another artifact). Relays and agents drop
their copies as they need the room.

SHA256 and NAME are as for 'artifact show'. Running it again after a failure
finishes the removal.

Examples:
  outpost artifact rm hello-1.0.0.tar.gz
  outpost artifact rm 2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824
`,
			setup: func(fs *flag.FlagSet) runFunc {
				return func(ctx context.Context, e *env, args []string) error {
					sha, err := resolveArtifact(ctx, e, args[0])
					if err != nil {
						return err
					}
					raw, err := e.api.send(ctx, http.MethodDelete, "/v1/artifacts/"+sha, nil)
					if err != nil {
						return err
					}
					if e.json {
						return writeJSON(e.stdout, raw)
					}
					var out struct {
						Name            string `json:"name"`
						Size            int64  `json:"size"`
						FreedFileServer bool   `json:"freed_file_server"`
					}
					if err := decode(raw, "removed artifact", &out); err != nil {
						return err
					}
					what := "its bytes left on the file server"
					if out.Name != "" {
						what = fmt.Sprintf("%s (%s)", out.Name, byteSize(out.Size))
						if !out.FreedFileServer {
							what += "; the file server did not hold it"
						}
					}
					_, err = fmt.Fprintf(e.stdout, "artifact %s removed: %s\n", sha, what)
					return err
				}
			},
		},
	}
}

// resolveArtifact turns what a person typed into an artifact's SHA-256:
// the whole hash as it is; a start of one (8 hex digits or more) or a
// name, when one artifact alone matches, from the list.
func resolveArtifact(ctx context.Context, e *env, arg string) (string, error) {
	s := strings.TrimPrefix(strings.ToLower(arg), "sha256:")
	if b, err := hex.DecodeString(s); err == nil && len(b) == sha256.Size {
		return s, nil
	}
	raw, err := e.api.get(ctx, "/v1/artifacts", nil)
	if err != nil {
		return "", err
	}
	var list struct {
		Artifacts []artifact `json:"artifacts"`
	}
	if err := decode(raw, "artifact list", &list); err != nil {
		return "", err
	}
	prefix := len(s) >= 8 && len(s) < 64 && strings.Trim(s, "0123456789abcdef") == ""
	var found []artifact
	for _, a := range list.Artifacts {
		if a.Name == arg || prefix && strings.HasPrefix(a.SHA256, s) {
			found = append(found, a)
		}
	}
	switch len(found) {
	case 1:
		return found[0].SHA256, nil
	case 0:
		return "", usagef("no artifact is named %q or has a SHA-256 starting so; see outpost artifact list", arg)
	}
	var which []string
	for _, a := range found {
		which = append(which, a.SHA256[:min(len(a.SHA256), 12)]+"… ("+a.Name+")")
	}
	return "", usagef("%q matches %d artifacts: %s; give the whole SHA-256", arg, len(found), strings.Join(which, ", "))
}

func pushArtifact(ctx context.Context, e *env, path, name string, quiet bool) error {
	var src io.Reader
	size := int64(-1)
	if path == "-" {
		if name == "" {
			return usagef("reading the artifact from standard input needs --name")
		}
		src = e.stdin
	} else {
		f, err := os.Open(path)
		if err != nil {
			return fmt.Errorf("open the artifact: %w", err)
		}
		defer f.Close()
		st, err := f.Stat()
		if err != nil {
			return fmt.Errorf("open the artifact: %w", err)
		}
		if st.IsDir() {
			return fmt.Errorf("%s is a directory; push a single file, such as a .tar.gz of it", path)
		}
		if st.Mode().IsRegular() {
			size = st.Size()
		}
		src = f
	}
	if name == "" {
		name = filepath.Base(path)
	}
	var prog *progress
	if !quiet {
		prog = newProgress(e.stderr, name, size, isTerminal(e.stderr), e.now)
	}
	body := &pushBody{r: src, hash: sha256.New(), p: prog}
	req, err := e.api.newRequest(ctx, http.MethodPost, "/v1/artifacts", url.Values{"name": {name}}, body)
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/octet-stream")
	switch {
	case size == 0:
		req.Body, req.ContentLength = http.NoBody, 0
	case size > 0:
		req.ContentLength = size
	default:
		req.ContentLength = -1 // chunked
	}
	raw, err := e.api.do(req)
	prog.finish(err == nil)
	if err != nil {
		return err
	}
	// The coordinator answers once it has the whole body, so the transport
	// is done reading and done does not wait on a blocked read.
	sha, sent := body.done()
	var a artifact
	if err := decode(raw, "artifact", &a); err != nil {
		return err
	}
	// The coordinator hashes on its side too; disagreeing means the bytes
	// changed on the way or the file changed while it was read.
	if (size < 0 || sent == size) && !strings.EqualFold(a.SHA256, sha) {
		return fmt.Errorf("the coordinator stored sha256 %s, but the %s sent hash to %s; did the file change during the upload? Push it again", a.SHA256, byteSize(sent), sha)
	}
	if e.json {
		return writeJSON(e.stdout, raw)
	}
	if _, err := fmt.Fprintln(e.stdout, a.SHA256); err != nil {
		return err
	}
	switch {
	case quiet:
	case a.AlreadyStored:
		_, err = fmt.Fprintf(e.stderr, "already stored, as %s since %s (%s); name it in a policy item as artifact: %s\n",
			a.Name, timeAndAge(e.now(), a.Uploaded.Time), byteSize(a.Size), a.SHA256)
	default:
		_, err = fmt.Fprintf(e.stderr, "stored %s (%s); name it in a policy item as artifact: %s\n", a.Name, byteSize(a.Size), a.SHA256)
	}
	return err
}
