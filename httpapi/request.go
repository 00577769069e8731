package httpapi

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"

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
// first forbidden field name, at any depth.
func scanForbidden(v any, path string, depth int) (string, error) {
	if depth > maxDepth {
		return "", domain.Invalid(path, "request nests deeper than 32 levels")
	}
	switch t := v.(type) {
	case map[string]any:
		for k, child := range t {
			p := k
			if path != "" {
				p = path + "." + k
			}
			if forbidden[normalise(k)] {
				return p, nil
			}
			if f, err := scanForbidden(child, p, depth+1); f != "" || err != nil {
				return f, err
			}
		}
	case []any:
		for i, child := range t {
			if f, err := scanForbidden(child, path+"["+strconv.Itoa(i)+"]", depth+1); f != "" || err != nil {
				return f, err
			}
		}
	}
	return "", nil
}

// decode reads the body into dst: bounded size, no forbidden fields (R19),
// no unknown fields, exactly one JSON value. It returns the raw body for
// the idempotency hash. A forbidden field's value is never echoed, logged
// or stored.
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
	}
	var generic any
	if err := json.Unmarshal(body, &generic); err != nil {
		return nil, domain.Invalid("body", "request body is not valid JSON")
	}
	if _, ok := generic.(map[string]any); !ok {
		return nil, domain.Invalid("body", "request body must be a JSON object")
	}
	field, err := scanForbidden(generic, "", 0)
	if err != nil {
		return nil, err
	}
	if field != "" {
		return nil, domain.Errorf(domain.CodeForbiddenField,
			"field %q must never be sent: the ledger does not accept card verification codes, PINs, card expiry dates or bank-account passwords (R19); nothing of this request was stored", field).
			With("field", field)
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(dst); err != nil {
		return nil, decodeError(err)
	}
	return body, nil
}

func decodeError(err error) error {
	var te *json.UnmarshalTypeError
	if errors.As(err, &te) {
		return domain.Invalid(te.Field, fmt.Sprintf("field %q must be a %s", te.Field, jsonKind(te.Type.Kind().String())))
	}
	if msg := err.Error(); strings.HasPrefix(msg, "json: unknown field ") {
		f := strings.Trim(strings.TrimPrefix(msg, "json: unknown field "), `"`)
		return domain.Invalid(f, fmt.Sprintf("unknown field %q", f))
	}
	return domain.Invalid("body", "request body does not match the expected shape")
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
