package kurrent

import (
	"bytes"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/EventStore/EventStore-Client-Go/v4/esdb"
	"github.com/google/uuid"
	"github.com/oklog/ulid/v2"

	"github.com/payledger/payledger/eventstore"
)

func TestParseURL(t *testing.T) {
	cases := []struct {
		url, address, user, pass, ns string
		tlsOff                       bool
		seeds                        int
	}{
		{url: "kurrentdb://127.0.0.1:2113?tls=false", address: "127.0.0.1:2113", tlsOff: true},
		{url: "KurrentDB://db.internal:2113", address: "db.internal:2113"},
		{url: "kdb://payledger:s3cret@db:2113?tls=false&namespace=ledger_eu", address: "db:2113", user: "payledger", pass: "s3cret", ns: "ledger_eu", tlsOff: true},
		{url: "esdb://localhost:2113?namespace=a1", address: "localhost:2113", ns: "a1"},
		{url: "kurrentdb+discover://n1:2113,n2:2113,n3:2113?tls=false", seeds: 3, tlsOff: true},
		{url: "kurrentdb://h:2113?namespace=x&tlsVerifyCert=false", address: "h:2113"},
	}
	for _, c := range cases {
		cfg, ns, err := ParseURL(c.url)
		if err != nil {
			t.Errorf("%s: %v", c.url, err)
			continue
		}
		if c.ns == "" && strings.Contains(c.url, "namespace=x") {
			c.ns = "x"
		}
		if cfg.Address != c.address && c.seeds == 0 || cfg.Username != c.user || cfg.Password != c.pass || ns != c.ns ||
			cfg.DisableTLS != c.tlsOff || len(cfg.GossipSeeds) != c.seeds {
			t.Errorf("%s: address %q user %q ns %q tls off %v seeds %d; want %q %q %q %v %d",
				c.url, cfg.Address, cfg.Username, ns, cfg.DisableTLS, len(cfg.GossipSeeds), c.address, c.user, c.ns, c.tlsOff, c.seeds)
		}
		if cfg.Logger == nil {
			t.Errorf("%s: the client's logger is not replaced", c.url)
		}
	}
	if cfg, _, err := ParseURL("kurrentdb://h:2113?namespace=x&tlsVerifyCert=false"); err != nil || !cfg.SkipCertificateVerification {
		t.Errorf("the client's settings are lost next to namespace: %+v %v", cfg, err)
	}
	for _, bad := range []string{
		"postgres://u@h/db", "http://h:2113", "h:2113", "kurrentdb://",
		"kurrentdb://h:2113?namespace=Bad-Name", "kurrentdb://h:2113?namespace=$system",
		"kurrentdb://user:hunter2@h:2113/path",
		// The client quotes the URL it parses in this one's message.
		"kurrentdb://user:hunter2@h:notaport?tls=false", "KurrentDB://user:hunter2@h:notaport",
	} {
		_, _, err := ParseURL(bad)
		if err == nil {
			t.Errorf("%s: accepted", bad)
			continue
		}
		if strings.Contains(err.Error(), "hunter2") {
			t.Errorf("%s: the error shows the password: %v", bad, err)
		}
	}
}

func TestRedact(t *testing.T) {
	for in, want := range map[string]string{
		"kurrentdb://u:pw@h:2113?tls=false": "kurrentdb://u:xxxxx@h:2113?tls=false",
		"kurrentdb://h:2113":                "kurrentdb://h:2113",
		"kurrentdb://u@h:2113":              "kurrentdb://u:xxxxx@h:2113",
		"no scheme":                         "the store URL",
	} {
		if got := Redact(in); got != want {
			t.Errorf("Redact(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestIsURL(t *testing.T) {
	for in, want := range map[string]bool{
		"kurrentdb://h:2113": true, "KurrentDB+Discover://a,b": true, "esdb://h": true, "kdb://": true,
		"postgres://u@h/db": false, "sqlite:x.db": false, "kurrentdb:h": false, "": false,
	} {
		if got := IsURL(in); got != want {
			t.Errorf("IsURL(%q) = %v, want %v", in, got, want)
		}
	}
}

func TestEventUUID(t *testing.T) {
	id := ulid.Make()
	if got := eventUUID(id.String()); got != uuid.UUID(id) {
		t.Fatalf("a ULID's event id is %s, want its own bits %s", got, uuid.UUID(id))
	}
	lower := strings.ToLower(id.String())
	if eventUUID(lower) == eventUUID(id.String()) {
		t.Fatal("two different id strings share an event id")
	}
	if a, b := eventUUID("key-1"), eventUUID("key-1"); a != b || a == eventUUID("key-2") {
		t.Fatal("non-ULID ids do not map deterministically to distinct event ids")
	}
	if v := eventUUID("key-1").Version(); v != 5 {
		t.Fatalf("non-ULID event id has version %d, want 5", v)
	}
}

// storedEvent returns an event as Append would store it.
func storedEvent(stream string, version, position int64, prev [32]byte, payload []byte) eventstore.Event {
	d := eventstore.EventData{ID: ulid.Make().String(), Type: "PaymentConfirmed", SchemaVersion: 2,
		OccurredAt:  time.Date(2031, 7, 14, 23, 59, 58, 123456789, time.FixedZone("x", 3600)).UTC(),
		CausationID: "c", CorrelationID: "r", IdempotencyKey: "k", Payload: payload}
	return eventstore.Event{EventData: d, Stream: stream, Version: version, Position: position, PrevHash: prev,
		Hash: eventstore.ComputeHash(prev, stream, version, d)}
}

// recorded is what the server gives back for data stored at revision rev.
func recorded(stream string, rev uint64, d esdb.EventData) *esdb.RecordedEvent {
	return &esdb.RecordedEvent{EventID: d.EventID, EventType: d.EventType, StreamID: stream, EventNumber: rev,
		Data: d.Data, UserMetadata: d.Metadata}
}

func TestEventRoundTrip(t *testing.T) {
	json := storedEvent("account-1", 3, 10, [32]byte{7}, []byte(`{"amount":"12.50"}`))
	binary := storedEvent("account-1", 4, 11, json.Hash, []byte{0, 1, 0xff, '\n'})
	for _, e := range []eventstore.Event{json, binary} {
		d, err := encodeEvent(e, 9)
		if err != nil {
			t.Fatal(err)
		}
		if d.EventID != eventUUID(e.ID) || d.EventType != e.Type {
			t.Fatalf("event id/type %s/%s", d.EventID, d.EventType)
		}
		if want := esdb.ContentTypeJson; (e.Position == 10) != (d.ContentType == want) {
			t.Fatalf("position %d: content type %v", e.Position, d.ContentType)
		}
		got, first, err := decodeEvent(recorded("payledger-log", uint64(e.Position-1), d))
		if err != nil {
			t.Fatal(err)
		}
		if first != 9 {
			t.Fatalf("batch first %d, want 9", first)
		}
		if got.ID != e.ID || got.Stream != e.Stream || got.Version != e.Version || got.Position != e.Position ||
			got.Type != e.Type || got.SchemaVersion != e.SchemaVersion || !got.OccurredAt.Equal(e.OccurredAt) ||
			got.OccurredAt.Location() != time.UTC || got.CausationID != e.CausationID || got.CorrelationID != e.CorrelationID ||
			got.IdempotencyKey != e.IdempotencyKey || !bytes.Equal(got.Payload, e.Payload) || got.PrevHash != e.PrevHash || got.Hash != e.Hash {
			t.Fatalf("decoded %+v, want %+v", got, e)
		}
		if _, err := eventstore.VerifyChain(e.PrevHash, []eventstore.Event{got}); err != nil {
			t.Fatalf("decoded event does not verify: %v", err)
		}
	}
	// Metadata that is not the adapter's is refused, not misread.
	d, _ := encodeEvent(json, 9)
	for name, meta := range map[string]string{
		"not json":      "{",
		"no version":    strings.Replace(string(d.Metadata), `"version":"3"`, `"version":""`, 1),
		"batch after":   strings.Replace(string(d.Metadata), `"batch_first":"9"`, `"batch_first":"11"`, 1),
		"short hash":    strings.Replace(string(d.Metadata), `"prev_hash":"07`, `"prev_hash":"`, 1),
		"bad time":      strings.Replace(string(d.Metadata), `"occurred_at":"2031`, `"occurred_at":"x2031`, 1),
		"schema":        strings.Replace(string(d.Metadata), `"schema_version":"2"`, `"schema_version":"two"`, 1),
		"no stream":     strings.Replace(string(d.Metadata), `"stream":"account-1"`, `"stream":""`, 1),
		"a link's data": "",
	} {
		if meta == string(d.Metadata) {
			t.Fatalf("%s: the replacement did not apply", name)
		}
		bad := d
		bad.Metadata = []byte(meta)
		if _, _, err := decodeEvent(recorded("payledger-log", 9, bad)); !errors.Is(err, errCorrupt) {
			t.Errorf("%s: decoded with error %v", name, err)
		}
	}
}

func TestLinks(t *testing.T) {
	id := uuid.New()
	l := linkTo(id, 41, "payledger-log")
	if l.EventType != "$>" || string(l.Data) != "41@payledger-log" || l.EventID != id {
		t.Fatalf("link %+v", l)
	}
	rev, stream, err := parseLink(l.Data)
	if err != nil || rev != 41 || stream != "payledger-log" {
		t.Fatalf("parsed %d %q %v", rev, stream, err)
	}
	for _, bad := range []string{"", "41", "x@s", "41@", "-1@s"} {
		if _, _, err := parseLink([]byte(bad)); !errors.Is(err, errCorrupt) {
			t.Errorf("link %q parsed: %v", bad, err)
		}
	}
}

func TestNames(t *testing.T) {
	n := names{"payledger"}
	got := []string{n.log(), n.stream("log"), n.id("01J"), n.snapshot("account-1")}
	want := []string{"payledger-log", "payledger-stream-log", "payledger-id-01J", "payledger-snapshot-account-1"}
	for i := range got {
		if got[i] != want[i] {
			t.Errorf("name %d: %q, want %q", i, got[i], want[i])
		}
	}
	if expectedRevision(0) != (esdb.NoStream{}) || expectedRevision(5) != esdb.Revision(4) {
		t.Fatal("expected revisions: 0 events is no stream, n events is revision n-1")
	}
}

func TestSnapshotRoundTrip(t *testing.T) {
	s := eventstore.Snapshot{Stream: "account-1", Version: 200, EventHash: [32]byte{1, 2}, Schema: 7, Payload: []byte(`{"x":1}`)}
	d, err := encodeSnapshot(s)
	if err != nil {
		t.Fatal(err)
	}
	got, err := decodeSnapshot(recorded("payledger-snapshot-account-1", 0, d))
	if err != nil || got.Stream != s.Stream || got.Version != s.Version || got.EventHash != s.EventHash || got.Schema != s.Schema || !bytes.Equal(got.Payload, s.Payload) {
		t.Fatalf("decoded %+v %v, want %+v", got, err, s)
	}
	d.Metadata = []byte(`{"stream":"account-1","version":"x"}`)
	if _, err := decodeSnapshot(recorded("s", 0, d)); !errors.Is(err, errCorrupt) {
		t.Fatalf("bad snapshot metadata: %v", err)
	}
}

func TestClassify(t *testing.T) {
	a1 := storedEvent("acc-1", 1, 1, [32]byte{}, []byte(`{"n":1}`))
	a2 := storedEvent("acc-1", 2, 2, a1.Hash, []byte(`{"n":2}`))
	b1 := storedEvent("acc-2", 1, 3, [32]byte{}, []byte(`{"n":3}`))
	fresh := eventstore.EventData{ID: ulid.Make().String(), Type: "X", SchemaVersion: 1, Payload: []byte("{}")}
	changed := a2.EventData
	changed.Payload = []byte(`{"n":"changed"}`)

	type call struct {
		stream   string
		expected int64
		events   []eventstore.EventData
		found    []*eventstore.Event
	}
	// Exact re-appends return the stored events.
	for name, c := range map[string]call{
		"same place":      {"acc-1", 0, []eventstore.EventData{a1.EventData, a2.EventData}, []*eventstore.Event{&a1, &a2}},
		"any":             {"acc-1", eventstore.Any, []eventstore.EventData{a2.EventData}, []*eventstore.Event{&a2}},
		"exact version 1": {"acc-1", 1, []eventstore.EventData{a2.EventData}, []*eventstore.Event{&a2}},
	} {
		got, err := classify(c.stream, c.expected, c.events, c.found)
		if err != nil || len(got) != len(c.events) || got[0].ID != c.events[0].ID {
			t.Errorf("%s: %d events, %v", name, len(got), err)
		}
	}
	// Nothing stored: neither.
	if got, err := classify("acc-1", 2, []eventstore.EventData{fresh}, []*eventstore.Event{nil}); got != nil || err != nil {
		t.Errorf("fresh id: %v %v", got, err)
	}
	// Every other reuse is refused.
	for name, c := range map[string]call{
		"other stream":     {"acc-2", eventstore.Any, []eventstore.EventData{a1.EventData}, []*eventstore.Event{&a1}},
		"other version":    {"acc-1", 1, []eventstore.EventData{a1.EventData}, []*eventstore.Event{&a1}},
		"other content":    {"acc-1", 1, []eventstore.EventData{changed}, []*eventstore.Event{&a2}},
		"mixed new/stored": {"acc-1", 2, []eventstore.EventData{fresh, a1.EventData}, []*eventstore.Event{nil, &a1}},
		"not consecutive":  {"acc-1", eventstore.Any, []eventstore.EventData{a2.EventData, a1.EventData}, []*eventstore.Event{&a2, &a1}},
		"two streams":      {"acc-1", eventstore.Any, []eventstore.EventData{a1.EventData, b1.EventData}, []*eventstore.Event{&a1, &b1}},
	} {
		got, err := classify(c.stream, c.expected, c.events, c.found)
		if got != nil || !errors.Is(err, eventstore.ErrIDReused) {
			t.Errorf("%s: %d events, error %v; want ErrIDReused", name, len(got), err)
		}
	}
}

func TestParallel(t *testing.T) {
	var mu = make(chan struct{}, 1)
	inFlight, most, calls := 0, 0, 0
	boom := errors.New("boom")
	err := parallel(50, 4, func(i int) error {
		mu <- struct{}{}
		inFlight++
		calls++
		most = max(most, inFlight)
		<-mu
		defer func() { mu <- struct{}{}; inFlight--; <-mu }()
		if i == 17 {
			return boom
		}
		return nil
	})
	if !errors.Is(err, boom) || calls != 50 || most > 4 || most < 1 {
		t.Fatalf("err %v, %d calls, at most %d at once (limit 4)", err, calls, most)
	}
}

func TestRetentionGuards(t *testing.T) {
	guarded := `{"$acl":{"$r":["payledger","$admins"],"$w":"payledger","$d":"$admins","$mw":["$admins","ops"]}}`
	present := func(gs []eventstore.Guard) map[string]bool {
		m := map[string]bool{}
		for _, g := range gs {
			m[g.Name] = g.Present
		}
		return m
	}
	check := func(what, meta, user string, want map[string]bool) {
		t.Helper()
		var raw []byte
		if meta != "" {
			raw = []byte(meta)
		}
		gs, err := logGuards(raw, user)
		if err != nil {
			t.Fatalf("%s: %v", what, err)
		}
		got := present(gs)
		if len(got) != 5 {
			t.Fatalf("%s: %d guards, want 5", what, len(got))
		}
		for name, w := range want {
			if got[name] != w {
				t.Errorf("%s: %s present %v, want %v", what, name, got[name], w)
			}
		}
	}
	all := map[string]bool{"log_no_max_age": true, "log_no_max_count": true, "log_no_truncate_before": true,
		"log_acl_denies_delete": true, "log_acl_denies_metadata_write": true}
	check("deployment as documented", guarded, "payledger", all)
	check("no metadata at all", "", "payledger", map[string]bool{"log_no_max_age": true, "log_acl_denies_delete": false, "log_acl_denies_metadata_write": false})
	check("insecure node, no user", guarded, "", map[string]bool{"log_acl_denies_delete": false, "log_acl_denies_metadata_write": false})
	check("as admin", guarded, "admin", map[string]bool{"log_acl_denies_delete": false})
	check("max age", `{"$maxAge":86400}`, "payledger", map[string]bool{"log_no_max_age": false, "log_no_max_count": true})
	check("max count", `{"$maxCount":10}`, "payledger", map[string]bool{"log_no_max_count": false})
	check("truncated", `{"$tb":100}`, "payledger", map[string]bool{"log_no_truncate_before": false})
	check("null max age", `{"$maxAge":null}`, "payledger", map[string]bool{"log_no_max_age": true})
	check("delete to everyone", `{"$acl":{"$d":"$all","$mw":"$admins"}}`, "payledger", map[string]bool{"log_acl_denies_delete": false, "log_acl_denies_metadata_write": true})
	check("delete to the user", `{"$acl":{"$d":["$admins","payledger"],"$mw":"$admins"}}`, "payledger", map[string]bool{"log_acl_denies_delete": false})
	check("default acl by name", `{"$acl":"$userStreamAcl"}`, "payledger", map[string]bool{"log_acl_denies_delete": false})
	check("acl without $d", `{"$acl":{"$mw":"$admins"}}`, "payledger", map[string]bool{"log_acl_denies_delete": false, "log_acl_denies_metadata_write": true})
	if _, err := logGuards([]byte(`{"$acl":{"$d":7}}`), "payledger"); err == nil {
		t.Error("an ACL role that is a number was read")
	}

	gs, err := settingsGuards([]byte(`{"$userStreamAcl":{"$r":"$all","$w":"$all","$d":"$admins","$mw":"$admins"},"$systemStreamAcl":{"$r":"$admins"}}`), "payledger")
	if err != nil || len(gs) != 2 || !gs[0].Present || !gs[1].Present {
		t.Fatalf("settings as documented: %+v %v", gs, err)
	}
	gs, err = settingsGuards([]byte(`{"$userStreamAcl":{"$d":"$all","$mw":"$admins"}}`), "payledger")
	if err != nil || present(gs)["default_acl_denies_delete"] || !present(gs)["default_acl_denies_metadata_write"] {
		t.Fatalf("settings that let everyone delete: %+v %v", gs, err)
	}
}
