package httpapi

import "sort"

// ForbiddenFieldNames exposes the normalised R19 field names to the
// OpenAPI test, which checks the document lists exactly these.
func ForbiddenFieldNames() []string {
	out := make([]string, 0, len(forbidden))
	for k := range forbidden {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// HasCardNumber is hasCardNumber, for the tests of other scripts.
var HasCardNumber = hasCardNumber
