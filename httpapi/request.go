package httpapi

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"reflect"
	"strconv"
	"strings"
	"unicode"
	"unicode/utf8"

	"github.com/payledger/payledger/domain"
	"github.com/payledger/payledger/ledger"
)

// maxBody bounds a request body.
const maxBody = 64 << 10

// maxDepth bounds JSON nesting, so the forbidden-field scan is bounded too.
const maxDepth = 32

// forbidden lists the normalised names of fields the ledger must never
// receive (R19): card verification codes, PINs, card expiry dates and bank
// account passwords. Names are compared lower-case with '_', '-', '.' and
// spaces removed, so "card_cvv", "CVV2" and "pin-code" all match.
var forbidden = map[string]bool{
	"cvv": true, "cvv2": true, "cvc": true, "cvc2": true, "cvn": true, "cid": true, "csc": true,
	"cardcvv": true, "cardcvc": true, "cardcvv2": true, "cardcsc": true,
	"securitycode": true, "cardsecuritycode": true, "cardverificationcode": true,
	"cardverificationvalue": true, "verificationcode2": true,
	"pin": true, "pincode": true, "pinblock": true, "cardpin": true, "atmpin": true, "bankpin": true,
	"pinnumber": true, "personalidentificationnumber": true,
	"expiry": true, "expirydate": true, "expiration": true, "expirationdate": true, "exp": true,
	"expdate": true, "expmonth": true, "expyear": true, "expirymonth": true, "expiryyear": true,
	"expirationmonth": true, "expirationyear": true, "cardexpiry": true, "cardexpiration": true,
	"cardexpirydate": true, "cardexpirationdate": true, "cardexp": true, "validthru": true, "validthrough": true,
	"validuntil": true, "goodthru": true,
	"bankpassword": true, "bankaccountpassword": true, "accountpassword": true, "bankcardpassword": true,
	"cardpassword": true, "paymentpassword": true, "onlinebankingpassword": true, "netbankpassword": true,
	"withdrawalpassword": true, "atmpassword": true,
}

func normalise(name string) string {
	var b strings.Builder
	for _, r := range strings.ToLower(name) {
		if r == '_' || r == '-' || r == '.' || r == ' ' {
			continue
		}
		b.WriteRune(r)
	}
	return b.String()
}

// scanForbidden walks a decoded JSON value and returns the path of the
// first field the ledger must never receive (R19), at any depth: a
// forbidden field name, or a card number in a free-text field (card).
func scanForbidden(v any, path string, depth int) (field string, card bool, err error) {
	if depth > maxDepth {
		return "", false, domain.Invalid(path, "request nests deeper than 32 levels")
	}
	switch t := v.(type) {
	case map[string]any:
		for k, child := range t {
			p := k
			if path != "" {
				p = path + "." + k
			}
			if forbidden[normalise(k)] {
				return p, false, nil
			}
			if s, ok := child.(string); ok && freeText[strings.ToLower(k)] && hasCardNumber(s) {
				return p, true, nil
			}
			if f, c, err := scanForbidden(child, p, depth+1); f != "" || err != nil {
				return f, c, err
			}
		}
	case []any:
		// A list of free text (reasons, evidence) is free text too.
		leaf := path[strings.LastIndexByte(path, '.')+1:]
		for i, child := range t {
			p := path + "[" + strconv.Itoa(i) + "]"
			if s, ok := child.(string); ok && freeText[strings.ToLower(leaf)] && hasCardNumber(s) {
				return p, true, nil
			}
			if f, c, err := scanForbidden(child, p, depth+1); f != "" || err != nil {
				return f, c, err
			}
		}
	}
	return "", false, nil
}

// decode reads the body into dst: application/json, bounded size, valid
// UTF-8, no key twice in an object (also when they differ only in case,
// which Go's decoder would otherwise merge), no forbidden fields and no
// card number in free text (R19), no unknown fields, exactly one JSON
// value. It returns the raw body for the idempotency hash. A forbidden
// field's value is never echoed, logged or stored.
func decode(r *http.Request, dst any) ([]byte, error) {
	body, err := io.ReadAll(io.LimitReader(r.Body, maxBody+1))
	if err != nil {
		return nil, domain.Invalid("body", "request body could not be read")
	}
	if len(body) > maxBody {
		return nil, domain.Invalid("body", "request body is larger than 64 KiB")
	}
	if len(bytes.TrimSpace(body)) == 0 {
		body = []byte("{}")
	} else if mt, _, err := mime.ParseMediaType(r.Header.Get("Content-Type")); err != nil || mt != "application/json" {
		return nil, domain.Errorf(domain.CodeUnsupportedMediaType, "send the request body as JSON with Content-Type: application/json")
	}
	if !utf8.Valid(body) {
		return nil, domain.Invalid("body", "request body is not valid UTF-8")
	}
	if err := checkKeys(body); err != nil {
		return nil, err
	}
	var generic any
	if err := json.Unmarshal(body, &generic); err != nil {
		return nil, domain.Invalid("body", "request body is not valid JSON")
	}
	if _, ok := generic.(map[string]any); !ok {
		return nil, domain.Invalid("body", "request body must be a JSON object")
	}
	field, card, err := scanForbidden(generic, "", 0)
	if err != nil {
		return nil, err
	}
	if card {
		return nil, domain.Errorf(domain.CodeForbiddenField,
			"field %q holds what looks like a card number; the ledger does not take card numbers in free text (R19): nothing of this request was stored", field).
			With("field", field)
	}
	if field != "" {
		return nil, domain.Errorf(domain.CodeForbiddenField,
			"field %q must never be sent: the ledger does not accept card verification codes, PINs, card expiry dates or bank-account passwords (R19); nothing of this request was stored", field).
			With("field", field)
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(dst); err != nil {
		return nil, decodeError(err, dst)
	}
	return body, nil
}

func decodeError(err error, dst any) error {
	var te *json.UnmarshalTypeError
	if errors.As(err, &te) {
		field := jsonPath(te.Field, dst)
		return domain.Invalid(field, fmt.Sprintf("field %q must be a %s", field, jsonKind(te.Type.Kind().String())))
	}
	if msg := err.Error(); strings.HasPrefix(msg, "json: unknown field ") {
		f := strings.Trim(strings.TrimPrefix(msg, "json: unknown field "), `"`)
		return domain.Invalid(f, fmt.Sprintf("unknown field %q", f))
	}
	return domain.Invalid("body", "request body does not match the expected shape")
}

// jsonPath turns the decoder's path of a field, which names the Go types
// of embedded structs ("authJSON.version"), into the request's JSON path
// ("version").
func jsonPath(goPath string, dst any) string {
	embedded := map[string]bool{}
	var collect func(t reflect.Type, depth int)
	collect = func(t reflect.Type, depth int) {
		for t.Kind() == reflect.Pointer || t.Kind() == reflect.Slice {
			t = t.Elem()
		}
		if t.Kind() != reflect.Struct || depth > maxDepth {
			return
		}
		for i := range t.NumField() {
			f := t.Field(i)
			if f.Anonymous {
				embedded[f.Type.Name()] = true
			}
			collect(f.Type, depth+1)
		}
	}
	collect(reflect.TypeOf(dst), 0)
	parts := strings.Split(goPath, ".")
	out := parts[:0]
	for _, p := range parts {
		if !embedded[p] {
			out = append(out, p)
		}
	}
	return strings.Join(out, ".")
}

// checkKeys refuses a body with a key twice in one object, compared
// without case: which of the two counted would be the decoder's choice.
func checkKeys(body []byte) error {
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.UseNumber()
	return checkValue(dec, "", 0)
}

func checkValue(dec *json.Decoder, path string, depth int) error {
	if depth > maxDepth {
		return domain.Invalid("body", "request nests deeper than 32 levels")
	}
	tok, err := dec.Token()
	if err != nil {
		return domain.Invalid("body", "request body is not valid JSON")
	}
	switch tok {
	case json.Delim('{'):
		seen := map[string]bool{}
		for dec.More() {
			kt, err := dec.Token()
			if err != nil {
				return domain.Invalid("body", "request body is not valid JSON")
			}
			name, _ := kt.(string)
			p := name
			if path != "" {
				p = path + "." + name
			}
			for i := 0; i < len(name); i++ {
				if name[i] >= utf8.RuneSelf {
					// Go's decoder folds some non-ASCII letters onto ASCII
					// ones ("ſ" onto "s"), which would slip a second key
					// past the checks below; every field name is ASCII.
					return domain.Invalid(p, fmt.Sprintf("field name %q is not ASCII; the API's field names are", p))
				}
			}
			if lower := strings.ToLower(name); seen[lower] {
				return domain.Invalid(p, fmt.Sprintf("key %q appears twice in one object (keys are compared without case)", p))
			} else {
				seen[lower] = true
			}
			if err := checkValue(dec, p, depth+1); err != nil {
				return err
			}
		}
	case json.Delim('['):
		for i := 0; dec.More(); i++ {
			if err := checkValue(dec, path+"["+strconv.Itoa(i)+"]", depth+1); err != nil {
				return err
			}
		}
	default:
		return nil
	}
	if _, err := dec.Token(); err != nil { // the closing delimiter
		return domain.Invalid("body", "request body is not valid JSON")
	}
	return nil
}

// freeText are the fields a customer or an operator types free text in,
// where a card number must not be stored (R19).
var freeText = map[string]bool{"reference": true, "description": true, "reason": true, "holder_name": true,
	"identity_check": true, "label": true, "device_id": true,
	// Loss cases and disputes.
	"note": true, "reasons": true, "evidence": true, "subject": true, "answer": true, "resolution": true, "assignee": true}

// hasCardNumber reports whether s holds a card number: a run of 13 to 19
// digits (any Unicode decimal digits) passing the Luhn check, which
// separators (spaces of any kind, invisible format characters, dashes,
// dots, slashes) may break up. Only whole runs are checked: a tenth of
// all digit strings pass Luhn, so windows of longer runs would refuse most
// long numeric references.
func hasCardNumber(s string) bool {
	var run []byte
	end := func() bool {
		found := len(run) >= 13 && len(run) <= 19 && luhn(run)
		run = run[:0]
		return found
	}
	for _, r := range s {
		switch {
		case unicode.IsDigit(r):
			if d := unicode.ToLower(r); d >= '0' && d <= '9' {
				run = append(run, byte(d))
			} else {
				run = append(run, byte('0'+digitValue(r)))
			}
		case unicode.IsSpace(r) || unicode.Is(unicode.Cf, r) || unicode.Is(unicode.Pd, r) || strings.ContainsRune("./\u2212\uff0e\uff0f", r):
			// a separator inside a grouped number, or around one
		default:
			if end() {
				return true
			}
		}
	}
	return end()
}

// digitValue is the value of a Unicode decimal digit: decimal digits come
// in blocks of ten from zero, some blocks right after another, so its
// distance from the first digit of its run, modulo ten.
func digitValue(r rune) int {
	z := r
	for n := 0; n < 100 && unicode.IsDigit(z-1); n++ {
		z--
	}
	return int(r-z) % 10
}

// luhn reports whether digits pass the Luhn (mod 10) check.
func luhn(digits []byte) bool {
	sum := 0
	for i := range digits {
		d := int(digits[len(digits)-1-i] - '0')
		if i%2 == 1 {
			d *= 2
			if d > 9 {
				d -= 9
			}
		}
		sum += d
	}
	return sum%10 == 0
}

func jsonKind(k string) string {
	switch k {
	case "string":
		return "string"
	case "slice":
		return "array"
	case "struct", "map":
		return "object"
	}
	return k
}

// idemOf reads the Idempotency-Key header and binds it to the route and
// body, so the same key with another request is detected.
func idemOf(keys *ledger.Keys, r *http.Request, body []byte) (ledger.Idem, error) {
	key := r.Header.Get("Idempotency-Key")
	if key == "" {
		return ledger.Idem{}, nil
	}
	if err := ledger.ValidateIdemKey(key); err != nil {
		return ledger.Idem{}, err
	}
	return ledger.Idem{Key: key, BodyHash: keys.BodyHash([]byte(r.Method), []byte(r.URL.Path), body)}, nil
}
