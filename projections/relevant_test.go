package projections

import (
	"strconv"
	"strings"
	"testing"

	"github.com/payledger/payledger/domain"
	"github.com/payledger/payledger/eventstore"
)

// TestRelevantCoversEveryMoneyEvent: the projection skips decoding the
// types that change nothing here, so a money event type it skipped would
// silently drop money from balances and statements.
func TestRelevantCoversEveryMoneyEvent(t *testing.T) {
	money := 0
	for _, tv := range domain.EventTypes() {
		typ, v, _ := strings.Cut(tv, "/")
		ver, err := strconv.Atoi(v)
		if err != nil {
			t.Fatalf("type %q: %v", tv, err)
		}
		ev, err := domain.DecodeEvent(typ, ver, []byte("{}"))
		if err != nil {
			t.Fatalf("decode empty %s: %v", tv, err)
		}
		_, isMoney := domain.MovementOf(ev)
		if isMoney {
			money++
		}
		it := decodeItem(eventstore.Event{EventData: eventstore.EventData{Type: typ, SchemaVersion: ver, Payload: []byte("{}")}})
		if isMoney && !it.facts.Moves {
			t.Errorf("%s moves money but the projection skips it", typ)
		}
		if typ == domain.TypeAccountOpened && !it.facts.Opened {
			t.Errorf("the projection skips %s", typ)
		}
	}
	if money < 8 {
		t.Fatalf("found %d money event types, want at least 8", money)
	}
}
