package relay

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"golang.org/x/time/rate"

	"github.com/outposthq/outpost/pkg/httprange"
	"github.com/outposthq/outpost/relay/internal/cache"
)

// BlobPath is where an artifact is served: BlobPath + lower-case hex SHA-256.
const BlobPath = "/v1/blobs/sha256/"

type httpMetrics struct {
	requests    *prometheus.CounterVec
	servedBytes *prometheus.CounterVec
	connections *prometheus.CounterVec
}

func newHTTPMetrics(reg prometheus.Registerer) (*httpMetrics, error) {
	m := &httpMetrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "outpost", Subsystem: "relay", Name: "http_requests_total",
			Help: "Content server requests by route and status code.",
		}, []string{"route", "code"}),
		servedBytes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "outpost", Subsystem: "relay", Name: "served_bytes_total",
			Help: "Artifact bytes sent to agents, by source: cache (a hit on disk) or fetch (streamed while fetched from the file server).",
		}, []string{"source"}),
		connections: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "outpost", Subsystem: "relay", Name: "connections_total",
			Help: "Client connections accepted, by send buffer: lan (lan_send_buffer_bytes, for a handshake under 1 ms) or autotuned (the kernel's).",
		}, []string{"send_buffer"}),
	}
	m.servedBytes.WithLabelValues("cache")
	m.servedBytes.WithLabelValues("fetch")
	m.connections.WithLabelValues("lan")
	m.connections.WithLabelValues("autotuned")
	for _, c := range []prometheus.Collector{m.requests, m.servedBytes, m.connections} {
		if err := reg.Register(c); err != nil {
			return nil, err
		}
	}
	return m, nil
}

// handlerFunc is a handler that reports failure by returning an error,
// which errorStatus maps to a status and a JSON body.
type handlerFunc func(w http.ResponseWriter, r *http.Request) error

func (r *Relay) routes(g prometheus.Gatherer) http.Handler {
	mux := http.NewServeMux()
	// {hash...} takes the rest of the path, so that a name with a slash
	// is a malformed hash (400) and not an unknown route.
	mux.Handle("GET "+BlobPath+"{hash...}", r.adapt(r.getBlob)) // GET patterns also match HEAD
	mux.Handle("GET /healthz", r.adapt(func(w http.ResponseWriter, _ *http.Request) error {
		writeJSON(w, http.StatusOK, map[string]string{"status": "ok"})
		return nil
	}))
	if g != nil {
		mux.Handle("GET /metrics", promhttp.HandlerFor(g, promhttp.HandlerOpts{}))
	}
	return r.instrument(mux)
}

// getBlob serves an artifact, from disk on a hit; on a miss it streams the
// fetch in progress (joining it if another request started it), so that the
// first byte goes out as soon as it arrives from the file server. A stream
// whose artifact then fails verification is cut before its last byte. HEAD
// fetches too: it must state the exact length, and doubles as a way to
// pre-stage an artifact (the fetch it starts goes on once it has answered;
// see cache.Detach).
func (r *Relay) getBlob(w http.ResponseWriter, req *http.Request) error {
	hash := req.PathValue("hash")
	// Over HTTPS an enrolled relay serves members only; plain HTTP, which
	// an office allows knowingly, proves nobody.
	if r.tls != nil && r.membership != nil && r.cfg.MembersOnly {
		if err := r.membership.verifyMember(req.TLS); err != nil {
			return err
		}
	}
	if err := httprange.Check(req); err != nil {
		return err // before Open: a refused request starts no fetch
	}
	obj, err := r.cache.Open(req.Context(), hash)
	if err != nil {
		return err
	}
	defer obj.Close()
	if req.Method == http.MethodHead && !obj.Hit() {
		// A HEAD of a large miss answers once the size is known; left to
		// its readers, the fetch would end with it and the WAN bytes read
		// so far would wait for a next request that may never come.
		r.cache.Detach(hash)
	}
	digest, _ := hex.DecodeString(hash)
	h := w.Header()
	h.Set("Content-Type", "application/octet-stream")
	h.Set("ETag", `"`+hash+`"`)
	h.Set("Repr-Digest", "sha-256=:"+base64.StdEncoding.EncodeToString(digest)+":")
	// The name is the content: it never changes.
	h.Set("Cache-Control", "public, max-age=31536000, immutable")
	h.Set("X-Content-Type-Options", "nosniff")
	source := "cache"
	if !obj.Hit() {
		source = "fetch"
		h.Set("X-Outpost-Source", "fetch")
	}
	var content io.ReadSeeker = obj
	if f, ok := obj.(interface{ OSFile() *os.File }); ok {
		content = f.OSFile() // so that net/http sends it by sendfile
	}
	if r.egress != nil {
		// Still by sendfile, a burst of the limit at a time (SendTo).
		content = &limitedSeeker{ReadSeeker: obj, r: cache.LimitReader(req.Context(), obj, r.egress),
			ctx: req.Context(), lim: r.egress}
	}
	if sw, ok := w.(*responseWriter); ok {
		sw.source = source
	}
	// No modification time: the ETag is the validator.
	http.ServeContent(w, req, "", time.Time{}, content)
	if ctxErr := req.Context().Err(); ctxErr == nil {
		if rerr := readErr(content); rerr != nil {
			// The body is cut short of its Content-Length; dropping the
			// connection tells the client the copy is not whole.
			r.logger.Warn("artifact stream cut", "sha256", hash, "err", rerr)
			panic(http.ErrAbortHandler)
		}
	}
	return nil
}

// limitedSeeker is a ReadSeeker whose reads go through a rate limit.
type limitedSeeker struct {
	io.ReadSeeker
	r   io.Reader
	err error
	ctx context.Context
	lim *rate.Limiter
}

// sender is an Object that sends itself by sendfile as it becomes readable:
// the stream of a fetch in progress.
type sender interface {
	SendTo(w io.Writer, n int64) (int64, error)
}

// SendTo sends the next n bytes to w, which must be an io.ReaderFrom, a
// burst of the limit at a time, each by sendfile (w's ReadFrom given the
// file) and paid for after it went out, as Read pays. Without it a limited
// egress copied every byte through user space 32 KiB at a time.
func (l *limitedSeeker) SendTo(w io.Writer, n int64) (int64, error) {
	rf, ok := w.(io.ReaderFrom)
	if !ok {
		return io.Copy(w, io.LimitReader(l, n))
	}
	var sent int64
	for sent < n {
		k := min(n-sent, int64(l.lim.Burst()))
		var m int64
		var err error
		switch src := l.ReadSeeker.(type) {
		case sender:
			m, err = src.SendTo(w, k)
		case interface{ OSFile() *os.File }:
			m, err = rf.ReadFrom(&io.LimitedReader{R: src.OSFile(), N: k})
		default:
			m, err = io.Copy(w, io.LimitReader(l.ReadSeeker, k))
		}
		if err == nil && m < k {
			// The source ended early: cut the response (readErr).
			err = io.ErrUnexpectedEOF
			l.err = err
		}
		sent += m
		if m > 0 {
			if werr := l.lim.WaitN(l.ctx, int(m)); werr != nil && err == nil {
				err = werr
			}
		}
		if err != nil {
			return sent, err
		}
	}
	return sent, nil
}

func (l *limitedSeeker) Read(p []byte) (int, error) {
	n, err := l.r.Read(p)
	if err != nil && err != io.EOF {
		l.err = err
	}
	return n, err
}

// readErr is the error a stream of a fetch in progress failed with, if any.
func readErr(r io.ReadSeeker) error {
	switch v := r.(type) {
	case *limitedSeeker:
		if v.err != nil {
			return v.err
		}
		return readErr(v.ReadSeeker)
	case interface{ Err() error }:
		return v.Err()
	}
	return nil
}

// adapt turns a handlerFunc into an http.Handler, writing its error.
func (r *Relay) adapt(h handlerFunc) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		err := h(w, req)
		if err == nil {
			return
		}
		status, msg := errorStatus(err)
		log := r.logger.With("method", req.Method, "path", req.URL.Path, "status", status, "err", err)
		switch {
		case status >= 500 && req.Context().Err() == nil:
			log.Warn("request failed")
		default:
			log.Debug("request failed")
		}
		writeJSON(w, status, map[string]string{"error": msg})
	})
}

// errorStatus maps an error to the status and message the client sees.
func errorStatus(err error) (int, string) {
	switch {
	case errors.Is(err, cache.ErrInvalidHash):
		return http.StatusBadRequest, "malformed artifact name in the path: want " + BlobPath + "<sha256 as 64 lower-case hex digits>"
	case errors.Is(err, cache.ErrNotFound):
		return http.StatusNotFound, err.Error()
	case errors.Is(err, errNotMember), errors.Is(err, errRemovedMember):
		return http.StatusForbidden, err.Error()
	case errors.Is(err, errNotLinked):
		return http.StatusServiceUnavailable, err.Error()
	case errors.Is(err, httprange.ErrTooMany):
		return http.StatusRequestedRangeNotSatisfiable, err.Error()
	case errors.Is(err, cache.ErrUpstream):
		return http.StatusBadGateway, "cannot get the artifact from the file server: " + err.Error()
	case errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded):
		return http.StatusServiceUnavailable, "the request ended before the artifact arrived: " + err.Error()
	}
	return http.StatusInternalServerError, "relay: " + err.Error()
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	body, _ := json.Marshal(v)
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Content-Length", strconv.Itoa(len(body)+1))
	w.WriteHeader(status)
	w.Write(append(body, '\n'))
}

// instrument counts requests and served bytes, holds Run's shutdown until
// the handler returns, and rewrites the plain-text errors of net/http (an
// unknown route, a Range beyond the end) into the relay's JSON shape.
func (r *Relay) instrument(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		r.inflight.add()
		defer r.inflight.done()
		rw := &responseWriter{ResponseWriter: w}
		defer func() {
			// A cut stream panics with http.ErrAbortHandler; it is
			// counted, then passed on.
			p := recover()
			if p == nil {
				rw.finish()
			}
			r.count(req, rw)
			if p != nil {
				panic(p)
			}
		}()
		next.ServeHTTP(rw, req)
	})
}

func (r *Relay) count(req *http.Request, rw *responseWriter) {
	route := "other"
	switch req.Pattern {
	case "GET " + BlobPath + "{hash...}":
		route = "blob"
		if rw.source != "" {
			r.metrics.servedBytes.WithLabelValues(rw.source).Add(float64(rw.bytes))
		}
	case "GET /healthz":
		route = "healthz"
	case "GET /metrics":
		route = "metrics"
	}
	status := rw.status
	if status == 0 {
		status = http.StatusOK
	}
	r.metrics.requests.WithLabelValues(route, strconv.Itoa(status)).Inc()
}

// responseWriter records the status and body bytes, and holds back a
// non-JSON error body so that finish can send it as {"error": ...}. It keeps
// io.ReaderFrom, so that artifacts still go out by sendfile.
type responseWriter struct {
	http.ResponseWriter
	status  int
	bytes   int64
	errBody *bytes.Buffer // set while rewriting an error
	source  string        // where the artifact's bytes came from
}

func (w *responseWriter) WriteHeader(code int) {
	if w.status != 0 {
		return
	}
	w.status = code
	h := w.Header()
	if code >= 400 && !strings.HasPrefix(h.Get("Content-Type"), "application/json") {
		w.errBody = new(bytes.Buffer)
		// Headers meant for the artifact do not describe an error.
		for _, k := range []string{"Cache-Control", "ETag", "Repr-Digest", "Content-Length"} {
			h.Del(k)
		}
		return
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *responseWriter) Write(p []byte) (int, error) {
	if w.status == 0 {
		w.WriteHeader(http.StatusOK)
	}
	if w.errBody != nil {
		return w.errBody.Write(p)
	}
	n, err := w.ResponseWriter.Write(p)
	w.bytes += int64(n)
	return n, err
}

func (w *responseWriter) ReadFrom(src io.Reader) (int64, error) {
	if w.status == 0 {
		w.WriteHeader(http.StatusOK)
	}
	if w.errBody != nil {
		return w.errBody.ReadFrom(src)
	}
	var n int64
	var err error
	lr, limited := src.(*io.LimitedReader)
	dst, canReadFrom := w.ResponseWriter.(io.ReaderFrom)
	if limited && canReadFrom {
		if st, ok := lr.R.(sender); ok {
			// A stream of a fetch in progress (sendfile what has arrived),
			// or a limited egress (sendfile a burst at a time).
			n, err = st.SendTo(struct {
				io.Writer
				io.ReaderFrom
			}{w.ResponseWriter, dst}, lr.N)
			lr.N -= n
			w.bytes += n
			return n, err
		}
	}
	if rf, ok := w.ResponseWriter.(io.ReaderFrom); ok {
		n, err = rf.ReadFrom(src)
	} else {
		n, err = io.Copy(struct{ io.Writer }{w.ResponseWriter}, src)
	}
	w.bytes += n
	return n, err
}

// Unwrap lets http.ResponseController reach the connection.
func (w *responseWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

func (w *responseWriter) finish() {
	if w.errBody == nil {
		return
	}
	msg := strings.TrimSpace(w.errBody.String())
	if msg == "" {
		msg = strings.ToLower(http.StatusText(w.status))
	}
	body, _ := json.Marshal(map[string]string{"error": msg})
	h := w.Header()
	h.Set("Content-Type", "application/json")
	h.Set("Content-Length", strconv.Itoa(len(body)+1))
	w.ResponseWriter.WriteHeader(w.status)
	w.ResponseWriter.Write(append(body, '\n'))
}
