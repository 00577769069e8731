package tests

import (
	"crypto/tls"
	"net/http"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestServeTLS: --tls-self-signed serves HTTPS with TLS 1.2 at least and
// no-store on personal data; plain HTTP off loopback is refused unless
// asked for.
func TestServeTLS(t *testing.T) {
	srv := start(t, t.TempDir(), "--tls-self-signed")
	if !strings.HasPrefix(srv.url, "https://") {
		t.Fatalf("serving %s, want https", srv.url)
	}
	client := func(maxVersion uint16) *http.Client {
		return &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{
			TLSClientConfig: &tls.Config{InsecureSkipVerify: true, MaxVersion: maxVersion}}} // self-signed on purpose
	}
	resp, err := client(0).Get(srv.url + "/v1/accounts/01J00000000000000000000000")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusUnauthorized || resp.TLS == nil || resp.TLS.Version < tls.VersionTLS12 {
		t.Fatalf("HTTPS reply: %d, TLS %v", resp.StatusCode, resp.TLS)
	}
	if cc := resp.Header.Get("Cache-Control"); cc != "no-store" {
		t.Fatalf("Cache-Control %q on an account route", cc)
	}
	if _, err := client(tls.VersionTLS11).Get(srv.url + "/healthz"); err == nil {
		t.Fatal("a TLS 1.1 client was served")
	}
	srv.stop(t, syscall.SIGTERM)

	out, err := exec.Command(binary, "serve", "--addr", "0.0.0.0:0", "--data", t.TempDir()).CombinedOutput()
	if err == nil || !strings.Contains(string(out), "--insecure-http") {
		t.Fatalf("plain HTTP on 0.0.0.0: err %v, output %s", err, out)
	}
}
