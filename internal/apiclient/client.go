// Package apiclient is a small HTTP client for the ledger's API, used by
// the demo and the end-to-end tests so both speak to the server exactly as
// an outside client would. It is not product API, and imports nothing of
// the project.
package apiclient

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"
)

// Client calls one ledger server, as one caller: Token is the bearer
// credential it sends (a session token or a staff key; "" for none).
type Client struct {
	Base  string
	HTTP  *http.Client
	Token string
}

// As returns a client for the same server that sends token.
func (c *Client) As(token string) *Client {
	cp := *c
	cp.Token = token
	return &cp
}

// New returns a client for base (e.g. "http://127.0.0.1:8080").
func New(base string) *Client {
	return &Client{Base: base, HTTP: &http.Client{Timeout: 30 * time.Second}}
}

// Response is a decoded reply.
type Response struct {
	Status int
	Header http.Header
	Body   map[string]any
	Raw    []byte
}

// Str returns a top-level string field ("" when absent).
func (r Response) Str(key string) string {
	s, _ := r.Body[key].(string)
	return s
}

// Obj returns a nested object field.
func (r Response) Obj(key string) map[string]any {
	m, _ := r.Body[key].(map[string]any)
	return m
}

// List returns a top-level array of objects.
func (r Response) List(key string) []map[string]any {
	raw, _ := r.Body[key].([]any)
	out := make([]map[string]any, 0, len(raw))
	for _, v := range raw {
		if m, ok := v.(map[string]any); ok {
			out = append(out, m)
		}
	}
	return out
}

// Do sends a request with an optional JSON body and Idempotency-Key and
// decodes the JSON reply. Any status is returned, not turned into an error;
// an error means the exchange itself failed.
func (c *Client) Do(ctx context.Context, method, path string, body any, idemKey string) (Response, error) {
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return Response{}, fmt.Errorf("encode %s %s: %w", method, path, err)
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, c.Base+path, rd)
	if err != nil {
		return Response{}, err
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if idemKey != "" {
		req.Header.Set("Idempotency-Key", idemKey)
	}
	if c.Token != "" {
		req.Header.Set("Authorization", "Bearer "+c.Token)
	}
	resp, err := c.HTTP.Do(req)
	if err != nil {
		return Response{}, fmt.Errorf("%s %s: %w", method, path, err)
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(io.LimitReader(resp.Body, 8<<20))
	if err != nil {
		return Response{}, fmt.Errorf("%s %s: read reply: %w", method, path, err)
	}
	out := Response{Status: resp.StatusCode, Header: resp.Header, Raw: raw}
	// Pages (text/html, text/csv) are kept as Raw only.
	if len(bytes.TrimSpace(raw)) > 0 && !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/") {
		if err := json.Unmarshal(raw, &out.Body); err != nil {
			return out, fmt.Errorf("%s %s: reply is not a JSON object: %w", method, path, err)
		}
	}
	return out, nil
}

// Expect is Do that also checks the status, returning an error that quotes
// the reply when it differs.
func (c *Client) Expect(ctx context.Context, status int, method, path string, body any, idemKey string) (Response, error) {
	r, err := c.Do(ctx, method, path, body, idemKey)
	if err != nil {
		return r, err
	}
	if r.Status != status {
		return r, fmt.Errorf("%s %s: status %d, want %d: %s", method, path, r.Status, status, bytes.TrimSpace(r.Raw))
	}
	return r, nil
}
