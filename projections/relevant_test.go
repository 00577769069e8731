package projections

import (
	"strconv"
	"strings"
	"testing"

	"github.com/payledger/payledger/domain"
)

// TestRelevantCoversEveryMoneyEvent: the projection skips decoding types
// outside relevant, so a money event type missing from it would silently
// drop money from balances and statements.
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
		if (isMoney || typ == domain.TypeAccountOpened) && !relevant[typ] {
			t.Errorf("%s changes the read models but is not in relevant", typ)
		}
	}
	if money < 3 {
		t.Fatalf("found %d money event types, want at least 3", money)
	}
}
