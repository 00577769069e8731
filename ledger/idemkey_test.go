package ledger_test

import (
	"strings"
	"testing"

	"github.com/payledger/payledger/domain"
	"github.com/payledger/payledger/ledger"
)

// TestValidateIdemKey: a key that is not UTF-8 text (bytes HTTP lets
// through in a header), holds a NUL, a '|' or a line break, or is too
// long is refused as invalid input; UTF-8 keys are accepted.
func TestValidateIdemKey(t *testing.T) {
	for _, k := range []string{"order-42", "clé-é-🙂", strings.Repeat("k", ledger.MaxIdemKey)} {
		if err := ledger.ValidateIdemKey(k); err != nil {
			t.Errorf("%q refused: %v", k, err)
		}
	}
	for _, k := range []string{"k\xff", "\xc3\x28", "k\x00", "a|b", "a\nb", strings.Repeat("k", ledger.MaxIdemKey+1)} {
		err := ledger.ValidateIdemKey(k)
		if err == nil {
			t.Errorf("%q accepted", k)
			continue
		}
		if domain.ErrorCode(err) != domain.CodeInvalid {
			t.Errorf("%q: %v, want an invalid_request error", k, err)
		}
	}
}
