package main

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"net/http/pprof"
	"os"
	"os/signal"
	"syscall"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	rpcstatus "google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/grpc"
)

// floorFlag makes the harness the floor server instead (it re-executes
// itself with it): `-floor-server ADDR [PPROF_ADDR]`, where PPROF_ADDR serves
// /debug/pprof/profile.
const floorFlag = "-floor-server"

// floorServer is the cheapest possible ext_authz server: it allows every
// request without reading it. Its CPU per request is the cost of gRPC alone.
type floorServer struct {
	authv3.UnimplementedAuthorizationServer
	resp *authv3.CheckResponse
}

func (f *floorServer) Check(context.Context, *authv3.CheckRequest) (*authv3.CheckResponse, error) {
	return f.resp, nil
}

// runFloor serves the floor on addr until SIGTERM or SIGINT, with the same
// gRPC server options keygate uses, and a CPU profile on pprofAddr if set.
func runFloor(addr, pprofAddr string) error {
	lis, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("floor: %w", err)
	}
	if err := serveProfile(pprofAddr); err != nil {
		return err
	}
	srv := grpc.NewServer(grpc.MaxConcurrentStreams(1000))
	authv3.RegisterAuthorizationServer(srv, &floorServer{resp: &authv3.CheckResponse{
		Status:       &rpcstatus.Status{},
		HttpResponse: &authv3.CheckResponse_OkResponse{OkResponse: &authv3.OkHttpResponse{}},
	}})
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	go func() {
		<-ctx.Done()
		srv.Stop()
	}()
	return srv.Serve(lis)
}

// childMain runs a role the harness re-executes itself in; handled is false
// for a normal run.
func childMain(args []string) (code int, handled bool) {
	if len(args) < 2 || len(args) > 3 || (args[0] != floorFlag && args[0] != floorHTTPFlag) {
		return 0, false
	}
	pprofAddr := ""
	if len(args) == 3 {
		pprofAddr = args[2]
	}
	serve := runFloor
	if args[0] == floorHTTPFlag {
		serve = runHTTPFloor
	}
	if err := serve(args[1], pprofAddr); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1, true
	}
	return 0, true
}

// serveProfile serves a CPU profile at /debug/pprof/profile on addr, in the
// background, when addr is set: how -profile reads the floors.
func serveProfile(addr string) error {
	if addr == "" {
		return nil
	}
	lis, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("floor pprof: %w", err)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	go func() { _ = http.Serve(lis, mux) }()
	return nil
}
