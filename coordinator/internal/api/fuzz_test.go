package api

import (
	"errors"
	"net/http"
	"net/http/httptest"
	"net/url"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/outposthq/outpost/coordinator/internal/store"
)

// An office body (POST /v1/offices, PATCH /v1/offices/{name}) is the
// admin's, or a manager's, and what the coordinator accepts from it ends
// up in every agent's configuration and in the hosts the CA certifies for
// relays. Whatever the body, the answer is a 4xx with a message or an
// office that keeps validateOffice's promises, and the same body applied
// again changes nothing.
func FuzzOfficeInput(f *testing.F) {
	f.Add(`{"name":"berlin","location":"Berlin"}`, "")
	f.Add(`{"name":"berlin","mode":"relay","relays":["https://10.0.0.5:8090"],"checkin_interval":"2m","time_zone":"Europe/Berlin"}`, `{"subnets":["10.1.0.0/16"],"egress":["203.0.113.7"]}`)
	f.Add(`{"name":"x","mode":"distribution","distribution_server":"10.0.0.7:8090","allow_plain_http":false}`, `{"distribution_server":"http://10.0.0.7:8090/"}`)
	f.Add(`{"name":"x","mode":"relay","relays":["http://10.0.0.6:8090"],"allow_plain_http":true}`, `{"allow_plain_http":false}`)
	f.Add(`{"name":"Berlin Office"}`, `{"colour":"red"}`)
	f.Add(`{"name":"x","checkin_interval":"1s"}`, `{"checkin_interval":5}`)
	f.Add(`{"name":"x","time_zone":"Local"}`, `{"time_zone":"../../etc/passwd"}`)
	f.Add(`{"name":"x"} {}`, `[]`)
	f.Add(`{"name":null}`, `{"mode":null,"relays":null}`)
	// Found: relay URLs that named no host, or carried a query or a
	// fragment that agents' blob paths would land in.
	f.Add(`{"name":"x","mode":"relay","relays":["https://"]}`, `{"relays":["https://a b:1"]}`)
	f.Add(`{"name":"x","mode":"relay","relays":["https://r.example.org/?q#f"]}`, `{"relays":["https://u:p@r.example.org"]}`)
	f.Fuzz(func(t *testing.T, create, update string) {
		o, err := createBody(create)
		if err != nil {
			return
		}
		checkOffice(t, o)
		for _, body := range []string{update, update} {
			var in officeInput
			if err := decodeBody(body, &in); err != nil {
				return
			}
			before := *o
			if err := in.apply(o); err != nil {
				checkRefusal(t, body, err)
				*o = before
				return
			}
			checkOffice(t, o)
		}
		// The second application of the same body was a no-op.
		var in officeInput
		if decodeBody(update, &in) != nil {
			t.Fatalf("%q decoded once, not twice", update)
		}
		again := *o
		if err := in.apply(&again); err != nil || !reflect.DeepEqual(again, *o) {
			t.Fatalf("%q applied again: %v, %+v then %+v", update, err, *o, again)
		}
	})
}

// decodeBody decodes body as the API does a request's.
func decodeBody(body string, v any) error {
	r := httptest.NewRequest("POST", "/v1/offices", strings.NewReader(body))
	return decodeJSON(httptest.NewRecorder(), r, v)
}

// createBody is what POST /v1/offices makes of body, short of the store.
func createBody(body string) (*store.Office, error) {
	var in officeInput
	if err := decodeBody(body, &in); err != nil {
		return nil, err
	}
	if in.Name == nil {
		return nil, errors.New("no name")
	}
	o := &store.Office{Name: *in.Name, Mode: "direct", CheckinInterval: defaultInterval, TimeZone: "UTC", Created: time.Now().UTC(), AllowPlainHTTP: new(bool)}
	return o, in.apply(o)
}

func checkRefusal(t *testing.T, body string, err error) {
	t.Helper()
	var se *statusError
	if !errors.As(err, &se) || se.code != http.StatusBadRequest || se.msg == "" {
		t.Fatalf("%q refused with %v (%T), want a 400 with a message", body, err, err)
	}
}

// checkOffice fails t unless o keeps what agents, relays and the CA
// rely on.
func checkOffice(t *testing.T, o *store.Office) {
	t.Helper()
	if !officeName.MatchString(o.Name) || len(o.Description) > 1024 || len(o.Location) > 256 || len(o.Relays) > 16 {
		t.Fatalf("accepted office %+v", o)
	}
	if o.CheckinInterval < minInterval || o.CheckinInterval > maxInterval {
		t.Fatalf("accepted interval %v", o.CheckinInterval)
	}
	if _, err := time.LoadLocation(o.TimeZone); err != nil || strings.EqualFold(o.TimeZone, "local") {
		t.Fatalf("accepted time zone %q", o.TimeZone)
	}
	switch o.Mode {
	case "direct", "relay", "distribution":
	default:
		t.Fatalf("accepted mode %q", o.Mode)
	}
	if o.Mode == "relay" && len(o.Relays) == 0 || o.Mode == "distribution" && o.DistributionServer == "" {
		t.Fatalf("accepted mode %s without its servers: %+v", o.Mode, o)
	}
	for _, r := range o.RelayURLs() {
		// Agents fetch from r + "/v1/blobs/...", and the CA certifies
		// the host it names for the office's relays.
		u, err := url.Parse(r)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Hostname() == "" ||
			u.User != nil || u.RawQuery != "" || u.ForceQuery || u.Fragment != "" || len(r) > 512 {
			t.Fatalf("accepted relay URL %q (%v)", r, err)
		}
		if u.Scheme == "http" && !o.PlainHTTPAllowed() {
			t.Fatalf("accepted plain relay %q where plain HTTP is not allowed", r)
		}
	}
}
