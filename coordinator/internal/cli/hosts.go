package cli

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/quic-go/quic-go"
	"google.golang.org/protobuf/proto"

	"github.com/outposthq/outpost/coordinator/internal/auth"
	"github.com/outposthq/outpost/pkg/safetext"
	"github.com/outposthq/outpost/pkg/tlsutil"
	"github.com/outposthq/outpost/pkg/wire"
)

// session is one technician session with a host, brokered by the
// coordinator over the QUIC connection the host's agent keeps open.
type session struct {
	conn *quic.Conn
	str  *quic.Stream
	user string
	// role is the signed-in user's API role, "" for a technician: it
	// decides which advice the user can follow.
	role string
	// open is what was asked of the host, and direct whether the
	// session goes to it straight (else through the coordinator): what a
	// lost connection may have left undone.
	open   *wire.SessionOpen
	direct bool
	mu     sync.Mutex // one writer at a time: keystrokes and resizes
}

func openSession(ctx context.Context, e *env, open *wire.SessionOpen) (*session, error) {
	// Hosts and the coordinator take a session's first message up to
	// MaxSessionOpenSize, with the token (up to 8 KiB) in it: say so
	// here rather than have the stream closed on the technician.
	if n := proto.Size(open); n > wire.MaxSessionOpenSize-16<<10 {
		return nil, usagef("the command is too long for a session (%d KiB of arguments; at most %d KiB): put it in a script, copy it to the host with outpost cp, and run that",
			n>>10, (wire.MaxSessionOpenSize-16<<10)>>10)
	}
	direct, localUser := e.getenv("OUTPOST_DIRECT"), e.getenv("OUTPOST_LOCAL_USER")
	if localUser != "" && direct == "" {
		// A host-local password goes to the host alone, never through
		// the coordinator.
		return nil, usagef("break-glass (OUTPOST_LOCAL_USER) reaches a host only directly: set OUTPOST_DIRECT=host:port too (and OUTPOST_CA_FINGERPRINT)")
	}
	if localUser != "" && !strings.HasPrefix(open.GetHost(), "ag-") {
		// Only a member id is proved by the host's certificate: any
		// member answering at that address would get the password.
		return nil, usagef("break-glass names the host by its member id (ag-...), which its certificate proves, not %q: the id is in outpost agent list, and in the host's identity.json", open.GetHost())
	}
	var c *credentials
	var err error
	if localUser == "" {
		if c, err = fresh(ctx, e.getenv); err != nil {
			return nil, err
		}
	} else if c, _, err = loadCredentials(e.getenv); err != nil {
		c = &credentials{} // break-glass works without a sign-in
	}
	fingerprint := e.getenv("OUTPOST_CA_FINGERPRINT")
	if fingerprint == "" {
		fingerprint = c.CAFingerprint
	}
	addr := direct
	if addr == "" {
		addr = e.getenv("OUTPOST_QUIC")
	}
	if addr == "" {
		addr = c.QUICAddr
	}
	if addr == "" || fingerprint == "" {
		return nil, errors.New("the sign-in does not say how to reach hosts (no QUIC address or CA fingerprint): run outpost login again, or set OUTPOST_QUIC=host:port (OUTPOST_DIRECT and OUTPOST_CA_FINGERPRINT for a host itself)")
	}
	quicConf := &quic.Config{HandshakeIdleTimeout: 10 * time.Second, MaxIdleTimeout: time.Minute, KeepAlivePeriod: 15 * time.Second}
	var conn *quic.Conn
	switch via := e.getenv("OUTPOST_VIA"); {
	case direct != "":
		tlsConf, err := hostTLS(fingerprint, open.GetHost())
		if err != nil {
			return nil, err
		}
		if conn, err = quic.DialAddr(ctx, addr, tlsConf, quicConf); err != nil {
			return nil, fmt.Errorf("reach %s over QUIC: %w", addr, err)
		}
	case via != "" && via != "auto" && via != "direct" && via != "coordinator":
		return nil, usagef("OUTPOST_VIA=%q: want auto (the default: the host directly when it can be reached, else through the coordinator), direct or coordinator", via)
	case localUser == "" && via != "coordinator":
		// The host directly when it takes sessions and answers; the
		// coordinator brokers otherwise (NAT, firewalls, roaming).
		var why error
		conn, why = dialHostDirect(ctx, c, fingerprint, open.GetHost(), quicConf)
		if conn == nil && via == "direct" {
			return nil, fmt.Errorf("%s cannot be reached directly (OUTPOST_VIA=direct): %w", open.GetHost(), why)
		}
	}
	direct = "" // the coordinator's, unless a host answered
	if conn != nil {
		direct = conn.RemoteAddr().String()
	}
	if conn == nil {
		tlsConf, err := tlsutil.PinnedConfig(fingerprint, wire.ALPNTechnician)
		if err != nil {
			return nil, err
		}
		if conn, err = quic.DialAddr(ctx, addr, tlsConf, quicConf); err != nil {
			var idle *quic.IdleTimeoutError
			var hsTimeout *quic.HandshakeTimeoutError
			if errors.As(err, &idle) || errors.As(err, &hsTimeout) {
				return nil, fmt.Errorf("cannot reach the coordinator at %s (no answer over QUIC): is it running, and its QUIC port open to you? Without the coordinator, only break-glass reaches a host (OUTPOST_LOCAL_USER)", addr)
			}
			return nil, fmt.Errorf("reach the coordinator at %s over QUIC: %w", addr, err)
		}
	}
	s := &session{conn: conn, user: c.User, role: c.Role, open: open, direct: direct != ""}
	str, err := conn.OpenStreamSync(ctx)
	if err != nil {
		conn.CloseWithError(0, "")
		if connectionLost(err) {
			return nil, s.notOpened(err)
		}
		return nil, fmt.Errorf("open a session through %s: %w", addr, err)
	}
	s.str = str
	switch {
	case localUser != "":
		open.LocalUser, open.LocalPassword = localUser, e.getenv("OUTPOST_LOCAL_PASSWORD")
	case direct != "":
		// A host is shown a token signed for it alone, never the access
		// token, which would let it act as the user anywhere.
		if open.Token, err = sessionToken(ctx, c, open.GetHost(), conn); err != nil {
			conn.CloseWithError(0, "")
			return nil, err
		}
	default:
		open.Token = c.AccessToken // the coordinator signs the host's own
	}
	if err := wire.WriteMsg(str, open); err != nil {
		conn.CloseWithError(0, "")
		if connectionLost(err) {
			return nil, s.notOpened(err)
		}
		return nil, err
	}
	return s, nil
}

// link is the connection that err says was lost: the session's own, to
// the host or the coordinator, or, when the coordinator reset or ended
// the stream it brokers, the one between it and the host.
func (s *session) link(err error) string {
	var streamErr *quic.StreamError
	switch {
	case s.direct:
		return "the connection to " + s.open.GetHost()
	case errors.As(err, &streamErr) && streamErr.Remote, errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF):
		return "the connection between the coordinator and " + s.open.GetHost()
	}
	return "the connection to the coordinator"
}

// notOpened explains a connection lost before the host was asked anything.
func (s *session) notOpened(err error) error {
	return fmt.Errorf("%s was lost before the session opened%s: nothing was done on %s; try again", s.link(err), lostCause(err), s.open.GetHost())
}

// lost explains a connection that broke off before the session's end:
// what was asked of the host may or may not have been done, and how to
// find out.
func (s *session) lost(err error) error {
	host, path := s.open.GetHost(), s.open.GetPath()
	var during, after string
	switch s.open.GetKind() {
	case wire.SessionOpen_KIND_EXEC:
		during = "the command"
		after = fmt.Sprintf("it may or may not have taken effect on %s; check there (outpost connect %s) and try again", host, host)
	case wire.SessionOpen_KIND_SHELL:
		during = "the shell"
		after = fmt.Sprintf("what it ran may or may not have taken effect on %s; check there and connect again", host)
	case wire.SessionOpen_KIND_PUT:
		during = "the copy to " + host + ":" + path
		after = fmt.Sprintf("the file may or may not be there (it is written whole or not at all); check with outpost exec %s -- ls -l %s and try again", host, shellQuote([]string{path}))
	case wire.SessionOpen_KIND_GET:
		during = "the copy from " + host + ":" + path
		after = "nothing was written here; try again"
	case wire.SessionOpen_KIND_SYNC:
		during = "the run of the policy"
		after = fmt.Sprintf("it may or may not have run on %s, and it goes on if it started; outpost sync %s again shows how it ends", host, host)
	case wire.SessionOpen_KIND_REBOOT:
		during = "the reboot request"
		after = fmt.Sprintf("%s may or may not reboot; outpost reboot %s --cancel calls off a reboot that is scheduled", host, host)
	default:
		during = "the session with " + host
		after = "try again"
	}
	return fmt.Errorf("%s was lost during %s%s: %s", s.link(err), during, lostCause(err), after)
}

// sessionToken asks the coordinator for a token that only the host reached
// on conn takes, and checks that conn is that host: a token must not be
// shown to any other.
func sessionToken(ctx context.Context, c *credentials, host string, conn *quic.Conn) (string, error) {
	api, err := sessionAPI(c)
	if err != nil {
		return "", err
	}
	raw, err := api.send(ctx, http.MethodPost, "/v1/hosts/"+url.PathEscape(host)+"/session-token", nil)
	if err != nil {
		return "", fmt.Errorf("get a session token for %s from the coordinator: %w (without the coordinator, only break-glass reaches a host: OUTPOST_LOCAL_USER)", host, err)
	}
	var st struct {
		ID    string `json:"id"`
		Token string `json:"token"`
	}
	if err := decode(raw, "session token", &st); err != nil {
		return "", err
	}
	if st.Token == "" {
		return "", errors.New("the coordinator sent no session token: is it older than this CLI?")
	}
	if peer := conn.ConnectionState().TLS.PeerCertificates; len(peer) == 0 || peer[0].Subject.CommonName != st.ID {
		got := "an unnamed host"
		if len(peer) > 0 {
			got = peer[0].Subject.CommonName
		}
		return "", fmt.Errorf("%s is %s, but the coordinator knows %s as %s: not sending it a token", conn.RemoteAddr(), got, host, st.ID)
	}
	return st.Token, nil
}

// directTimeout bounds the attempt to reach a host directly before the
// session goes through the coordinator.
const directTimeout = 2 * time.Second

// sessionAPI is the coordinator's API as the signed-in user, trusting the
// CA the sign-in pinned.
func sessionAPI(c *credentials) (*client, error) {
	rt, err := trust{fingerprint: c.CAFingerprint}.transport(c.Server)
	if err != nil {
		return nil, err
	}
	return newClient(c.Server, c.AccessToken, rt)
}

// dialHostDirect asks the coordinator where host takes direct sessions and
// dials all those addresses at once; the first handshake that proves the
// host (its certificate names its member id) wins. nil, with the reason:
// go through the coordinator.
func dialHostDirect(ctx context.Context, c *credentials, fingerprint, host string, qc *quic.Config) (*quic.Conn, error) {
	api, err := sessionAPI(c)
	if err != nil {
		return nil, err
	}
	lctx, cancel := context.WithTimeout(ctx, directTimeout)
	defer cancel()
	raw, err := api.get(lctx, "/v1/hosts/"+url.PathEscape(host)+"/reach", nil)
	if err != nil {
		return nil, fmt.Errorf("ask the coordinator where it is: %w", err)
	}
	var reach struct {
		ID     string   `json:"id"`
		Direct []string `json:"direct"`
	}
	if err := decode(raw, "host reach", &reach); err != nil {
		return nil, err
	}
	if reach.ID == "" || len(reach.Direct) == 0 {
		return nil, errors.New("it takes no direct sessions (session_listen in its agent.yaml)")
	}
	tlsConf, err := hostTLS(fingerprint, reach.ID)
	if err != nil {
		return nil, err
	}
	won := make(chan *quic.Conn, len(reach.Direct))
	for _, addr := range reach.Direct[:min(len(reach.Direct), 8)] {
		go func() {
			conn, err := quic.DialAddr(lctx, addr, tlsConf, qc)
			if err != nil {
				conn = nil
			}
			won <- conn
		}()
	}
	var best *quic.Conn
	for range reach.Direct[:min(len(reach.Direct), 8)] {
		conn := <-won
		switch {
		case conn == nil:
		case best == nil:
			best = conn
			cancel() // the others need not finish
		default:
			conn.CloseWithError(0, "")
		}
	}
	if best == nil {
		return nil, fmt.Errorf("none of its addresses (%s) answered within %v", strings.Join(reach.Direct, ", "), directTimeout)
	}
	return best, nil
}

// hostTLS verifies a host's own certificate in direct mode: issued by the
// CA with the pinned fingerprint (the host sends it along), and for a host
// named by member id, issued to that member.
func hostTLS(fingerprint, host string) (*tls.Config, error) {
	want, err := tlsutil.NormalizeFingerprint(fingerprint)
	if err != nil {
		return nil, err
	}
	return &tls.Config{
		MinVersion:         tls.VersionTLS13,
		NextProtos:         []string{wire.ALPNTechnician},
		InsecureSkipVerify: true, // replaced by VerifyConnection
		VerifyConnection: func(cs tls.ConnectionState) error {
			chain := cs.PeerCertificates
			err := tlsutil.VerifyPinned(chain, want, x509.VerifyOptions{KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny}})
			switch {
			case errors.Is(err, tlsutil.ErrWrongCA):
				return fmt.Errorf("the host's CA does not match the pinned fingerprint %s", want)
			case err != nil:
				return fmt.Errorf("the host's certificate is not issued by the pinned CA: %w", err)
			case tlsutil.IsRelayCert(chain[0]):
				// Hosts answer with their member certificates; a relay's
				// serving certificate names whatever host the relay is
				// reached at.
				return fmt.Errorf("reached a relay's serving certificate (%s), not host %s", chain[0].Subject.CommonName, host)
			case strings.HasPrefix(host, "ag-") && chain[0].Subject.CommonName != host:
				return fmt.Errorf("reached %s, not %s", chain[0].Subject.CommonName, host)
			}
			return nil
		},
	}, nil
}

func (s *session) close() {
	s.str.CancelRead(0)
	s.str.Close()
	s.conn.CloseWithError(0, "")
}

func (s *session) send(m *wire.SessionInput) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return wire.WriteMsg(s.str, m)
}

// handlers are what a command does with each kind of output.
type handlers struct {
	stdout, stderr io.Writer
	fileInfo       func(*wire.FileInfo) error
	file           func([]byte) error
	fileEnd        func() error
	inventory      func(*wire.Inventory) error
	report         func([]byte) error
}

// sessionError is a session that ended with an error or a non-zero exit.
type sessionError struct {
	code int32
	msg  string
}

func (e *sessionError) Error() string { return e.msg }

// wait reads outputs until the session ends.
func (s *session) wait(ctx context.Context, host string, h handlers) error {
	stop := context.AfterFunc(ctx, s.close)
	defer stop()
	accepted := false
	for {
		var m wire.SessionOutput
		if err := wire.ReadMsg(s.str, &m); err != nil {
			if ctx.Err() != nil {
				return errInterrupted
			}
			if connectionLost(err) {
				return s.lost(err)
			}
			return fmt.Errorf("the session with %s broke off: %w", host, err)
		}
		switch b := m.GetBody().(type) {
		case *wire.SessionOutput_Accepted:
			accepted = true
		case *wire.SessionOutput_Stdout:
			if h.stdout != nil {
				h.stdout.Write(b.Stdout)
			}
		case *wire.SessionOutput_Stderr:
			if h.stderr != nil {
				h.stderr.Write(b.Stderr)
			}
		case *wire.SessionOutput_FileInfo:
			if h.fileInfo != nil {
				if err := h.fileInfo(b.FileInfo); err != nil {
					return err
				}
			}
		case *wire.SessionOutput_FileData:
			if h.file != nil {
				if err := h.file(b.FileData); err != nil {
					return err
				}
			}
		case *wire.SessionOutput_FileEnd:
			if h.fileEnd != nil {
				if err := h.fileEnd(); err != nil {
					return err
				}
			}
		case *wire.SessionOutput_Inventory:
			if h.inventory != nil {
				if err := h.inventory(b.Inventory); err != nil {
					return err
				}
			}
		case *wire.SessionOutput_Report:
			if h.report != nil {
				if err := h.report(b.Report); err != nil {
					return fmt.Errorf("read the report of %s: %w", host, err)
				}
			}
		case *wire.SessionOutput_End:
			end := b.End
			// Why it ended is the host's word (or the coordinator's),
			// printed as outpost's own error: written out, so that it
			// does not act on the terminal.
			why := safetext.Escape(end.GetError())
			switch {
			case end.GetRevoked():
				// The host's words start "session ended: " too.
				why = strings.TrimPrefix(why, "session ended: ")
				return &sessionError{code: -1, msg: fmt.Sprintf("%s ended the session: %s", host, why)}
			case end.GetDenied() && !accepted:
				return &sessionError{code: -1, msg: fmt.Sprintf("refused: %s", why)}
			case !accepted && unknownHost(end):
				return &sessionError{code: -1, msg: safetext.Escape(explainUnknownHost(end, s.role))}
			case end.GetError() != "":
				return &sessionError{code: end.GetExitCode(), msg: fmt.Sprintf("on %s: %s", host, why)}
			case end.GetExitCode() != 0:
				what := "the command"
				if s.open.GetKind() == wire.SessionOpen_KIND_SHELL {
					what = "the shell"
				}
				return &sessionError{code: end.GetExitCode(), msg: fmt.Sprintf("%s exited with status %d on %s", what, end.GetExitCode(), host)}
			}
			return nil
		}
	}
}

// The text of a coordinator from before SessionEnd.reason for a host name
// it cannot resolve.
const (
	noSuchHost = "no enrolled host is called "
	twoHosts   = " hosts are called "
)

// hostReason is why the coordinator could not find the host: its reason,
// or, from a coordinator that sends none, read from its words.
func hostReason(end *wire.SessionEnd) wire.SessionEnd_Reason {
	if r := end.GetReason(); r != wire.SessionEnd_REASON_UNSPECIFIED {
		return r
	}
	switch msg := end.GetError(); {
	case strings.HasPrefix(msg, noSuchHost):
		return wire.SessionEnd_REASON_UNKNOWN_HOST
	case strings.Contains(msg, twoHosts):
		return wire.SessionEnd_REASON_AMBIGUOUS_HOST
	}
	return wire.SessionEnd_REASON_UNSPECIFIED
}

func unknownHost(end *wire.SessionEnd) bool {
	r := hostReason(end)
	return r == wire.SessionEnd_REASON_UNKNOWN_HOST || r == wire.SessionEnd_REASON_AMBIGUOUS_HOST
}

// explainUnknownHost adds advice the user can follow to the coordinator's
// answer: a technician cannot list agents, so is told to check the name
// or ask an admin.
func explainUnknownHost(end *wire.SessionEnd, role string) string {
	advice := "check the name (the hostname as the host reports it, or its member id ag-...); outpost hosts lists the hosts you may reach"
	ids := " (outpost hosts NAME shows their ids)"
	if role != "" {
		advice = "check the name, or find the host with outpost agent search TEXT or outpost agent list"
		ids = " (outpost agent search NAME shows them)"
	}
	msg := strings.TrimSuffix(end.GetError(), ": not found")
	msg = strings.TrimSuffix(msg, ": conflict")
	switch hostReason(end) {
	case wire.SessionEnd_REASON_UNKNOWN_HOST:
		return msg + ": " + advice
	case wire.SessionEnd_REASON_AMBIGUOUS_HOST:
		return msg + ids
	}
	return msg
}

// onTerminal puts the technician's terminal tty in raw mode and passes
// its resizes on to the session; undo puts it back. instead is the advice
// when raw mode cannot be had.
func (s *session) onTerminal(tty *os.File, instead string) (undo func(), err error) {
	restore, err := rawTerminal(tty)
	if err != nil {
		return nil, fmt.Errorf("put the terminal in raw mode: %w (%s)", err, instead)
	}
	stop := watchResize(tty, func(ws *wire.WindowSize) {
		_ = s.send(&wire.SessionInput{Body: &wire.SessionInput_Resize{Resize: ws}})
	})
	return func() { stop(); restore() }, nil
}

// forwardStdin sends r as the session's standard input, then closes it.
func (s *session) forwardStdin(r io.Reader) {
	buf := make([]byte, 32<<10)
	for {
		n, err := r.Read(buf)
		if n > 0 {
			if s.send(&wire.SessionInput{Body: &wire.SessionInput_Stdin{Stdin: append([]byte(nil), buf[:n]...)}}) != nil {
				return
			}
		}
		if err != nil {
			_ = s.send(&wire.SessionInput{Body: &wire.SessionInput_CloseStdin{CloseStdin: true}})
			return
		}
	}
}

func hostCommands() []*command {
	return []*command{
		{
			name: "hash-password", minArgs: 0, maxArgs: 0, offline: true,
			summary: "print the Argon2id hash of a password read from standard input (a host's break_glass_hash)",
			help: `Break-glass is a host-local password for when the coordinator is gone; it
is off unless the host's agent.yaml has break_glass_hash (and, to be reached
without the coordinator, session_listen). Users marked force-server-security
cannot use it. A technician then connects straight to the host:

  OUTPOST_DIRECT=10.1.0.23:8029 OUTPOST_CA_FINGERPRINT=sha256:... \
  OUTPOST_LOCAL_USER=tina OUTPOST_LOCAL_PASSWORD=... outpost exec pc-7 -- id

Examples:
  outpost hash-password < glass.pw
`,
			setup: func(fs *flag.FlagSet) runFunc {
				return func(ctx context.Context, e *env, args []string) error {
					pw, err := readPassword(e, true)
					if err != nil {
						return err
					}
					h, err := auth.HashPassword(pw, auth.DefaultKDF())
					if err != nil {
						return err
					}
					_, err = fmt.Fprintln(e.stdout, h)
					return err
				}
			},
		},
		{
			name: "hosts", args: "[TEXT]", maxArgs: 1, timeout: defaultTimeout,
			summary: "the hosts you may work on, and what you may do on each",
			help: `Lists the hosts where the signed-in user has rights, from the office's
permission list and the host's own, the user's grants and its groups' (deny
wins): view (inventory), control (sync, reboot), command (exec, connect),
files (cp) and manage (the permission lists: outpost perm). TEXT keeps
the hosts whose hostname contains it, in any case, or whose id starts with
it. A host goes by the signed policy it holds, so a change an admin just
made reaches it with its next revision. Needs outpost login (the admin
token is nobody on hosts).

Examples:
  outpost hosts
  outpost hosts --office berlin
  outpost hosts pc-7
`,
			setup: func(fs *flag.FlagSet) runFunc {
				officeName := fs.String("office", "", "only hosts in the office `NAME`")
				return func(ctx context.Context, e *env, args []string) error {
					q := url.Values{}
					if *officeName != "" {
						q.Set("office", *officeName)
					}
					if len(args) > 0 {
						q.Set("q", args[0])
					}
					return listMyHosts(ctx, e, q)
				}
			},
		},
		{
			name: "exec", args: "HOST -- COMMAND [ARG...]", minArgs: 2, maxArgs: -1, offline: true, globals: "--timeout", passesCommand: true,
			summary: "run a command on a host (needs the command right)",
			help: `Runs COMMAND on HOST (a hostname or member id): directly when the host
takes direct sessions and answers, else through the coordinator, which
brokers the session over the connection the host's agent keeps open (it
works for laptops behind NAT; OUTPOST_VIA=direct or coordinator forces one). Output streams back; standard input is
sent only with --stdin. outpost exits with the command's exit status.
Flags of COMMAND need -- before it (outpost exec pc-7 -- ls -la): without
it, outpost takes them for its own. -t runs COMMAND on a terminal of this
one's size, as ssh -t does, for full-screen programs (top, an editor): every
key goes to the host and output comes back as one stream. Needs outpost
login.

Examples:
  outpost exec pc-berlin-7 -- uname -a
  outpost exec -t pc-berlin-7 -- top
  tar c ./fix | outpost exec pc-7 --stdin -- tar x -C /tmp
`,
			setup: func(fs *flag.FlagSet) runFunc {
				stdin := fs.Bool("stdin", false, "send standard input to the command")
				withTTY := fs.Bool("t", false, "run the command on a terminal, as ssh -t (needs one here)")
				return func(ctx context.Context, e *env, args []string) error {
					open := &wire.SessionOpen{Host: args[0], Kind: wire.SessionOpen_KIND_EXEC, Argv: args[1:]}
					tty, isTTY := localTerminal(e.stdin, e.stdout)
					switch {
					case *withTTY && !isTTY:
						fmt.Fprintln(e.stderr, "outpost: no terminal here (-t): running the command without one")
					case *withTTY:
						open.Terminal = &wire.Terminal{Term: e.getenv("TERM"), Size: terminalSize(tty)}
					}
					s, err := openSession(ctx, e, open)
					if err != nil {
						return err
					}
					defer s.close()
					if open.Terminal != nil {
						undo, err := s.onTerminal(tty, "run without -t")
						if err != nil {
							return err
						}
						defer undo()
						go s.forwardStdin(e.stdin)
					} else if *stdin {
						go s.forwardStdin(e.stdin)
					} else if err := s.send(&wire.SessionInput{Body: &wire.SessionInput_CloseStdin{CloseStdin: true}}); err != nil {
						if connectionLost(err) {
							return s.lost(err)
						}
						return err
					}
					return s.wait(ctx, args[0], handlers{stdout: e.stdout, stderr: e.stderr})
				}
			},
		},
		{
			name: "connect", args: "HOST", minArgs: 1, maxArgs: 1, offline: true, globals: "--timeout",
			summary: "an interactive shell on a host (needs the command right)",
			help: `Opens the host's shell. Run from a terminal, the shell gets a terminal of
the same size on the host: line editing, job control and full-screen
programs work, every key (Ctrl-C included) goes to the host, and resizing
the window resizes it there. With input from a pipe, or with --no-tty, the
shell runs over pipes and reads its commands like a script: no prompts, no
job control, and outpost exits with the last command's status. Type exit or
press Ctrl-D to leave.
Needs outpost login.

Examples:
  outpost connect pc-berlin-7
  printf 'uptime\nexit\n' | outpost connect pc-berlin-7
`,
			setup: func(fs *flag.FlagSet) runFunc {
				noTTY := fs.Bool("no-tty", false, "run the shell over pipes even in a terminal")
				return func(ctx context.Context, e *env, args []string) error {
					open := &wire.SessionOpen{Host: args[0], Kind: wire.SessionOpen_KIND_SHELL}
					tty, isTTY := localTerminal(e.stdin, e.stdout)
					if isTTY && !*noTTY {
						open.Terminal = &wire.Terminal{Term: e.getenv("TERM"), Size: terminalSize(tty)}
					}
					s, err := openSession(ctx, e, open)
					if err != nil {
						return err
					}
					defer s.close()
					if open.Terminal != nil {
						undo, err := s.onTerminal(tty, "try --no-tty")
						if err != nil {
							return err
						}
						defer undo()
					}
					go s.forwardStdin(e.stdin)
					return s.wait(ctx, args[0], handlers{stdout: e.stdout, stderr: e.stderr})
				}
			},
		},
		{
			name: "sync", args: "HOST", minArgs: 1, maxArgs: 1, offline: true, globals: "--output, --timeout",
			summary: "have a host take its newest policy and run it now (needs the control right)",
			help: `The host checks in, takes its office's newest policy and runs it at once
(installs what is missing, removes what is to go, sets registry values, scans
for patches), instead of at its next interval, and the result of each item is
shown. A run already under way on the host finishes first. outpost exits with
status 1 when an item failed. HOST is a hostname or member id. Needs outpost
login.

Examples:
  outpost sync pc-berlin-7
  outpost sync ag-0123 --output json
`,
			setup: func(fs *flag.FlagSet) runFunc {
				return func(ctx context.Context, e *env, args []string) error {
					s, err := openSession(ctx, e, &wire.SessionOpen{Host: args[0], Kind: wire.SessionOpen_KIND_SYNC})
					if err != nil {
						return err
					}
					defer s.close()
					if !e.json {
						fmt.Fprintf(e.stderr, "running the policy on %s...\n", args[0])
					}
					var rep wire.Report
					got := false
					if err := s.wait(ctx, args[0], handlers{report: func(b []byte) error {
						got = true
						return wire.Unmarshal(b, &rep)
					}}); err != nil {
						return err
					}
					if !got {
						return fmt.Errorf("%s sent no report: is its agent older than this CLI?", args[0])
					}
					if e.json {
						if err := writeJSONValue(e.stdout, &rep); err != nil {
							return err
						}
					} else if err := printRun(e.stdout, e.now(), &rep); err != nil {
						return err
					}
					for _, it := range rep.GetItems() {
						if it.GetStatus() == wire.ItemReport_STATUS_FAILED {
							return &sessionError{code: 1, msg: fmt.Sprintf("an item failed on %s", args[0])}
						}
					}
					return nil
				}
			},
		},
		{
			name: "reboot", args: "HOST", minArgs: 1, maxArgs: 1, offline: true, globals: "--timeout",
			summary: "reboot a host, or call off its reboot (needs the control right)",
			help: `Schedules HOST's reboot with its own shutdown command, which warns the
people logged in on it: in a minute by default (--in, whole minutes, at most
24h), or at once with --now. --cancel calls off a reboot scheduled before.
--reason is what they are told and what the audit log records. HOST is a
hostname or member id. Needs outpost login.

Examples:
  outpost reboot pc-berlin-7 --reason "finish the March patches"
  outpost reboot pc-berlin-7 --in 15m
  outpost reboot pc-berlin-7 --cancel
`,
			setup: func(fs *flag.FlagSet) runFunc {
				in := newTTLFlag(fs, "in", time.Minute, "reboot after `DURATION` (rounded up to whole minutes)")
				now := fs.Bool("now", false, "reboot at once")
				cancel := fs.Bool("cancel", false, "call off a reboot scheduled before")
				reason := fs.String("reason", "", "what the host's users are told, in `TEXT`")
				return func(ctx context.Context, e *env, args []string) error {
					open := &wire.SessionOpen{Host: args[0], Kind: wire.SessionOpen_KIND_REBOOT, Reason: *reason, Cancel: *cancel}
					switch {
					case *cancel && (*now || *reason != "" || flagSet(fs, "in")):
						return usagef("--cancel takes none of --now, --in and --reason")
					case *now && flagSet(fs, "in"):
						return usagef("give --now or --in, not both")
					case *in < 0 || *in > 24*time.Hour:
						return usagef("--in %v: want from 0 to 24h", *in)
					case !*now && !*cancel:
						open.DelaySeconds = uint32((*in + time.Second - 1) / time.Second)
					}
					s, err := openSession(ctx, e, open)
					if err != nil {
						return err
					}
					defer s.close()
					return s.wait(ctx, args[0], handlers{stdout: e.stdout, stderr: e.stderr})
				}
			},
		},
		{
			name: "inventory", args: "HOST", minArgs: 1, maxArgs: 1, offline: true, globals: "--output, --timeout",
			summary: "what a host is and holds (needs the view right)",
			help: `HOST is a hostname or member id. Needs outpost login.

Examples:
  outpost inventory pc-berlin-7
  outpost inventory ag-0123 --output json
`,
			setup: func(fs *flag.FlagSet) runFunc {
				return func(ctx context.Context, e *env, args []string) error {
					s, err := openSession(ctx, e, &wire.SessionOpen{Host: args[0], Kind: wire.SessionOpen_KIND_INVENTORY})
					if err != nil {
						return err
					}
					defer s.close()
					return s.wait(ctx, args[0], handlers{inventory: func(inv *wire.Inventory) error {
						if e.json {
							return writeJSONValue(e.stdout, inv)
						}
						return printInventory(e.stdout, inv)
					}})
				}
			},
		},
		{
			name: "cp", args: "SRC DST", minArgs: 2, maxArgs: 2, offline: true, globals: "--output, --timeout",
			summary: "copy a file to or from a host (needs the files right)",
			help: `One of SRC and DST is HOST:/absolute/path. The file appears whole or not
at all on the other side. Needs outpost login.

Examples:
  outpost cp ./fix.sh pc-berlin-7:/tmp/fix.sh
  outpost cp pc-berlin-7:/var/log/syslog ./syslog
`,
			setup: func(fs *flag.FlagSet) runFunc {
				return func(ctx context.Context, e *env, args []string) error {
					srcHost, srcPath, srcRemote := splitRemote(args[0])
					dstHost, dstPath, dstRemote := splitRemote(args[1])
					switch {
					case srcRemote == dstRemote:
						return usagef("one of SRC and DST must be HOST:/path on a host, the other a local path")
					case dstRemote:
						return putRemote(ctx, e, args[0], dstHost, dstPath)
					default:
						return getRemote(ctx, e, srcHost, srcPath, args[1])
					}
				}
			},
		},
	}
}

// printInventory prints what a host is, then its items in a table of their
// own: item ids run long and would push the values away from their labels.
func printInventory(w io.Writer, inv *wire.Inventory) error {
	err := writeFields(w, [][2]string{
		{"host", fmt.Sprintf("%s (%s)", inv.GetHostname(), inv.GetMemberId())},
		{"office", inv.GetOffice()},
		{"system", systemLine(inv)},
		{"addresses", dash(strings.Join(inv.GetAddresses(), ", "))},
		{"policy revision", fmt.Sprint(inv.GetRevision())},
	})
	if err != nil || len(inv.GetItems()) == 0 {
		return err
	}
	tw := newTable(w)
	for _, it := range inv.GetItems() {
		fmt.Fprintf(tw, "  %s\t%s\n", safetext.Escape(it.GetId()), safetext.Escape(strings.TrimSpace(it.GetStatus()+" "+it.GetMessage())))
	}
	return tw.Flush()
}

// splitRemote reads HOST:/path; a local path has no colon before its
// first slash.
func splitRemote(s string) (host, path string, remote bool) {
	i := strings.Index(s, ":")
	if i <= 0 || strings.Contains(s[:i], "/") {
		return "", s, false
	}
	return s[:i], s[i+1:], true
}

func putRemote(ctx context.Context, e *env, local, host, path string) error {
	f, err := os.Open(local)
	if err != nil {
		return err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return err
	}
	if !st.Mode().IsRegular() {
		return usagef("%s is not a regular file: cp copies one file (for a directory: tar it, copy the archive, and unpack it with outpost exec)", local)
	}
	s, err := openSession(ctx, e, &wire.SessionOpen{Host: host, Kind: wire.SessionOpen_KIND_PUT, Path: path, Name: filepath.Base(local), Mode: uint32(st.Mode().Perm())})
	if err != nil {
		return err
	}
	defer s.close()
	errc := make(chan error, 1)
	go func() {
		buf := make([]byte, 32<<10)
		for {
			n, err := f.Read(buf)
			if n > 0 {
				if err := s.send(&wire.SessionInput{Body: &wire.SessionInput_FileData{FileData: append([]byte(nil), buf[:n]...)}}); err != nil {
					errc <- err
					return
				}
			}
			if errors.Is(err, io.EOF) {
				errc <- s.send(&wire.SessionInput{Body: &wire.SessionInput_FileEnd{FileEnd: true}})
				return
			}
			if err != nil {
				errc <- fmt.Errorf("read %s: %w", local, err)
				s.close()
				return
			}
		}
	}()
	if err := s.wait(ctx, host, handlers{}); err != nil {
		return err
	}
	if err := <-errc; err != nil {
		return err
	}
	if !e.json {
		fmt.Fprintf(e.stdout, "copied %s to %s:%s (%s)\n", local, host, path, byteSize(st.Size()))
	}
	return nil
}

func getRemote(ctx context.Context, e *env, host, path, local string) error {
	st, statErr := os.Stat(local)
	if statErr == nil && st.IsDir() {
		local = filepath.Join(local, filepath.Base(path))
		st, statErr = os.Stat(local)
	}
	// A device, named pipe or socket is written into, never replaced: a
	// copy to /dev/null must not leave a file in its place.
	var out io.Writer
	var tmp *os.File
	var created fs.FileMode
	if statErr == nil && !st.Mode().IsRegular() {
		if st.Mode()&fs.ModeSocket != 0 {
			return fmt.Errorf("copy to %s: it is a socket; copy to a file", local)
		}
		f, err := os.OpenFile(local, os.O_WRONLY, 0)
		if err != nil {
			return fmt.Errorf("copy to %s: %w", local, err)
		}
		defer f.Close()
		out = f
	} else {
		// A new file gets the host's mode less the umask, as cp gives it;
		// a file it replaces keeps its mode.
		var err error
		tmp, err = createBeside(local)
		if errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("copy to %s: the directory %s does not exist", local, filepath.Dir(local))
		}
		if err != nil {
			return fmt.Errorf("copy to %s: %w", local, err)
		}
		defer os.Remove(tmp.Name())
		defer tmp.Close()
		if statErr == nil {
			if err := tmp.Chmod(st.Mode().Perm()); err != nil {
				return err
			}
		} else if ts, err := tmp.Stat(); err == nil {
			created = ts.Mode() // 0666 less the umask
		}
		out = tmp
	}
	s, err := openSession(ctx, e, &wire.SessionOpen{Host: host, Kind: wire.SessionOpen_KIND_GET, Path: path})
	if err != nil {
		return err
	}
	defer s.close()
	var n int64
	var prog *progress
	complete := false
	err = s.wait(ctx, host, handlers{
		fileInfo: func(fi *wire.FileInfo) error {
			if tmp != nil && statErr != nil && created != 0 {
				if err := tmp.Chmod(newFileMode(fs.FileMode(fi.GetMode()), created)); err != nil {
					return err
				}
			}
			if !e.json {
				prog = newProgress(e.stderr, filepath.Base(path), fi.GetSize(), isTerminal(e.stderr), e.now)
			}
			return nil
		},
		file: func(b []byte) error {
			n += int64(len(b))
			prog.add(len(b))
			_, err := out.Write(b)
			return err
		},
		fileEnd: func() error { complete = true; return nil },
	})
	prog.finish(err == nil && complete)
	if err != nil {
		return err
	}
	if !complete {
		return fmt.Errorf("the copy of %s:%s ended before the file did", host, path)
	}
	if tmp != nil {
		if err := tmp.Close(); err != nil {
			return err
		}
		if err := os.Rename(tmp.Name(), local); err != nil {
			return err
		}
	}
	if !e.json {
		fmt.Fprintf(e.stdout, "copied %s:%s to %s (%s)\n", host, path, local, byteSize(n))
	}
	return nil
}

// newFileMode is the host's mode less what the local umask takes from new
// files, read from the mode a file made with 0666 got: an execute bit goes
// where the umask took the read bit.
func newFileMode(host, created fs.FileMode) fs.FileMode {
	mask := created.Perm()
	mask |= (mask & 0o444) >> 2
	return host.Perm() & mask
}

// createBeside creates a new, uniquely named file next to path, with mode
// 0666 less the umask, for the download that will replace path.
func createBeside(path string) (*os.File, error) {
	for range 100 {
		var b [6]byte
		_, _ = rand.Read(b[:])
		f, err := os.OpenFile(filepath.Join(filepath.Dir(path), ".outpost-cp-"+hex.EncodeToString(b[:])), os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o666)
		if !errors.Is(err, fs.ErrExist) {
			return f, err
		}
	}
	return nil, fmt.Errorf("no unused temporary name next to %s", path)
}

// listMyHosts prints the hosts where the signed-in user has rights.
func listMyHosts(ctx context.Context, e *env, q url.Values) error {
	raw, err := e.api.get(ctx, "/v1/me/hosts", q)
	if err != nil {
		return err
	}
	if e.json {
		return writeJSON(e.stdout, raw)
	}
	var out struct {
		User  string `json:"user"`
		Hosts []struct {
			ID        string   `json:"id"`
			Hostname  string   `json:"hostname"`
			Office    string   `json:"office"`
			Connected bool     `json:"connected"`
			LastSeen  stamp    `json:"last_seen"`
			Rights    []string `json:"rights"`
			Shared    bool     `json:"shared_hostname"`
		} `json:"hosts"`
	}
	if err := decode(raw, "hosts", &out); err != nil {
		return err
	}
	if out.User == "" {
		_, err := fmt.Fprintln(e.stderr, "the admin token is nobody on hosts: sign in as a user (outpost login USER) to see where you may work")
		return err
	}
	if len(out.Hosts) == 0 {
		what := "no host grants " + out.User + " any right"
		if len(q) > 0 {
			what += " among those asked for"
		}
		_, err := fmt.Fprintf(e.stderr, "%s; an admin grants them with outpost perm add\n", what)
		return err
	}
	rows := make([][]string, 0, len(out.Hosts))
	shared := false
	for _, h := range out.Hosts {
		name, state := h.Hostname, "offline, seen "+ago(e.now(), h.LastSeen.Time)
		if h.Shared {
			name, shared = name+"*", true
		}
		if h.Connected {
			state = "online"
		}
		rows = append(rows, []string{name, h.ID, h.Office, state, strings.Join(h.Rights, ",")})
	}
	if err := writeTable(e.stdout, []string{"HOST", "ID", "OFFICE", "STATE", "RIGHTS"}, rows); err != nil {
		return err
	}
	if shared {
		_, err = fmt.Fprintln(e.stderr, "* another host has the same name: name this one by its id")
	}
	return err
}

// printRun shows a run of a host's policy: its revision, then each item.
func printRun(w io.Writer, now time.Time, rep *wire.Report) error {
	counts := map[wire.ItemReport_Status]int{}
	rows := make([][]string, 0, len(rep.GetItems()))
	for _, it := range rep.GetItems() {
		counts[it.GetStatus()]++
		status := strings.ReplaceAll(strings.ToLower(strings.TrimPrefix(it.GetStatus().String(), "STATUS_")), "_", " ")
		if it.GetChanged() {
			status += ", changed"
		}
		rows = append(rows, []string{it.GetId(), it.GetKind(), status, dash(it.GetMessage())})
	}
	summary := fmt.Sprintf("revision %d, run %s: %s", rep.GetRevision(), ago(now, time.Unix(rep.GetAtUnix(), 0)), plural(len(rep.GetItems()), "item"))
	for _, st := range []wire.ItemReport_Status{wire.ItemReport_STATUS_COMPLIANT, wire.ItemReport_STATUS_NOT_APPLICABLE, wire.ItemReport_STATUS_PENDING, wire.ItemReport_STATUS_FAILED} {
		if n := counts[st]; n > 0 {
			summary += fmt.Sprintf(", %d %s", n, strings.ReplaceAll(strings.ToLower(strings.TrimPrefix(st.String(), "STATUS_")), "_", " "))
		}
	}
	if _, err := fmt.Fprintln(w, summary); err != nil {
		return err
	}
	if len(rows) > 0 {
		if err := writeTable(w, []string{"ITEM", "KIND", "STATUS", "MESSAGE"}, rows); err != nil {
			return err
		}
	}
	if items := rep.GetRebootItems(); len(items) > 0 {
		_, err := fmt.Fprintf(w, "waiting for a reboot since %s: %s (outpost reboot)\n", ago(now, time.Unix(rep.GetRebootSinceUnix(), 0)), safetext.Escape(strings.Join(items, ", ")))
		return err
	}
	return nil
}

// flagSet tells whether the flag name was given on the command line.
func flagSet(fs *flag.FlagSet, name string) bool {
	given := false
	fs.Visit(func(f *flag.Flag) { given = given || f.Name == name })
	return given
}

// systemLine is the inventory's system line: the host's uptime (since its
// boot, where the agent knows it) apart from the agent's.
func systemLine(inv *wire.Inventory) string {
	up := func(secs int64) string { return shortDuration(time.Duration(secs) * time.Second) }
	host := ""
	if s := inv.GetSystemUptimeSeconds(); s > 0 {
		host = ", up " + up(s)
	}
	return fmt.Sprintf("%s/%s%s; agent %s, running %s", inv.GetOs(), inv.GetArch(), host, inv.GetVersion(), up(inv.GetUptimeSeconds()))
}
