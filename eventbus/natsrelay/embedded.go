package natsrelay

import (
	"errors"
	"fmt"
	"net"
	"os"
	"strconv"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
)

// Embedded is a NATS server with JetStream running inside the process.
type Embedded struct {
	srv *server.Server
	// URL is where it listens, or "" when it takes in-process
	// connections only.
	URL string
}

// StartEmbedded starts a NATS server with JetStream storing under dir.
// With listen empty it opens no port (Connect reaches it in process);
// otherwise it listens on listen, which must be a loopback host:port (port
// 0 picks a free one; URL says which): the server has no authentication
// and carries the log's personal data.
func StartEmbedded(dir, listen string) (*Embedded, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("natsrelay: embedded NATS storage: %w", err)
	}
	opts := &server.Options{
		ServerName: "payledger",
		JetStream:  true,
		StoreDir:   dir,
		// The process's signals belong to payledger, and the server's own
		// log would interleave with payledger's.
		NoSigs:     true,
		NoLog:      true,
		DontListen: listen == "",
	}
	if listen != "" {
		host, port, err := net.SplitHostPort(listen)
		ip := net.ParseIP(host)
		p, perr := strconv.Atoi(port)
		if err != nil || perr != nil || p < 0 || p > 65535 || (host != "localhost" && (ip == nil || !ip.IsLoopback())) {
			return nil, fmt.Errorf("natsrelay: embedded NATS listens on loopback only (host:port), not %q", listen)
		}
		opts.Host, opts.Port = host, p
		if p == 0 {
			opts.Port = server.RANDOM_PORT // the server's 0 is its default port, 4222
		}
	}
	srv, err := server.NewServer(opts)
	if err != nil {
		return nil, fmt.Errorf("natsrelay: embedded NATS: %w", err)
	}
	srv.Start()
	if !srv.ReadyForConnections(30 * time.Second) {
		srv.Shutdown()
		srv.WaitForShutdown()
		return nil, errors.New("natsrelay: embedded NATS did not start within 30s")
	}
	e := &Embedded{srv: srv}
	if listen != "" {
		e.URL = srv.ClientURL()
	}
	return e, nil
}

// Connect opens an in-process connection to the server.
func (e *Embedded) Connect(opts ...nats.Option) (*nats.Conn, error) {
	return nats.Connect("", append(opts, nats.InProcessServer(e.srv), nats.Name("payledger"))...)
}

// Shutdown stops the server and waits until its storage is closed.
func (e *Embedded) Shutdown() {
	e.srv.Shutdown()
	e.srv.WaitForShutdown()
}
