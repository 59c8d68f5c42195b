package main

import (
	"context"
	"fmt"
	"net"
	"net/http"

	"github.com/valyala/fasthttp"
	"go.uber.org/zap"

	"github.com/keygate/keygate/internal/server"
)

// httpServerUsage is the --http-server flag's help.
const httpServerUsage = "which server runs the ext_authz HTTP port: fasthttp (the default: less CPU per check) or net (Go's net/http); both answer the same, and the admin and API ports always run on net/http"

// checkHTTPServer validates --http-server.
func checkHTTPServer(name string) error {
	if name != "fasthttp" && name != "net" {
		return fmt.Errorf("--http-server must be fasthttp or net, not %q", name)
	}
	return nil
}

// httpServing is a server on its listener: *http.Server, or the
// ext_authz port's fasthttp server.
type httpServing interface {
	Serve(net.Listener) error // http.ErrServerClosed once shut down
	Shutdown(context.Context) error
}

// listenAuthzHTTP opens the ext_authz HTTP port on the server --http-server
// names: net through listenNet (serve's listenHTTP, with the admin and API
// ports' settings, which adds it to srvs), fasthttp with the same
// protections (see server.NewFastHTTPServer), added to srvs here, which
// serve shuts down on SIGTERM. Both are nil when the port is disabled.
func listenAuthzHTTP(cfg *serveConfig, h *server.HTTPAuth, log *zap.Logger, srvs *[]httpServing,
	listenNet func(name, addr string, h http.Handler) (net.Listener, *http.Server, error),
) (net.Listener, httpServing, error) {
	if cfg.httpServer == "net" {
		lis, srv, err := listenNet("http", cfg.httpAddr, h)
		if srv == nil {
			return lis, nil, err // no typed nil in the interface
		}
		return lis, srv, err
	}
	if cfg.httpAddr == "" {
		return nil, nil, nil
	}
	lis, err := net.Listen("tcp", cfg.httpAddr)
	if err != nil {
		return nil, nil, fmt.Errorf("listen http: %w", err)
	}
	srv := fastServing{server.NewFastHTTPServer(h, server.FastHTTPConfig{IdleTimeout: cfg.idleTimeout, Log: log.Named("http")})}
	*srvs = append(*srvs, srv)
	return lis, srv, nil
}

// fastServing gives fasthttp's server net/http's Serve and Shutdown.
type fastServing struct{ s *fasthttp.Server }

func (f fastServing) Serve(lis net.Listener) error {
	if err := f.s.Serve(lis); err != nil {
		return err
	}
	return http.ErrServerClosed // fasthttp returns nil once shut down
}

// Shutdown stops accepting, closes idle connections, answers the requests
// in flight (with Connection: close) and waits for them, until ctx ends.
func (f fastServing) Shutdown(ctx context.Context) error { return f.s.ShutdownWithContext(ctx) }
