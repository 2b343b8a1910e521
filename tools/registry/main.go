// Command registry is an in-memory OCI registry (go-containerregistry's pkg/registry) for
// local clusters: Crossplane pulls the project's Function packages from it over plain HTTP
// on 127.0.0.1. Images live only as long as the process.
//
//	registry --address 127.0.0.1:5000
package main

import (
	"errors"
	"flag"
	"fmt"
	"log"
	"net"
	"net/http"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/google/go-containerregistry/pkg/registry"
)

func main() {
	address := flag.String("address", "127.0.0.1:5000", "HOST:PORT to listen on; port 0 picks a free port")
	quiet := flag.Bool("quiet", false, "do not log every request")
	flag.Parse()

	listener, err := net.Listen("tcp", *address)
	if err != nil {
		fmt.Fprintf(os.Stderr, "registry: cannot listen on %s: %v\n", *address, err)
		os.Exit(1)
	}
	var opts []registry.Option
	if *quiet {
		opts = append(opts, registry.Logger(log.New(nopWriter{}, "", 0)))
	}
	server := &http.Server{Handler: registry.New(opts...), ReadHeaderTimeout: 10 * time.Second}
	// The bound address on one line, so that a caller that passed port 0 can read it.
	fmt.Printf("registry: serving on %s\n", listener.Addr())

	stop := make(chan os.Signal, 1)
	signal.Notify(stop, syscall.SIGTERM, syscall.SIGINT)
	go func() {
		<-stop
		_ = server.Close()
	}()
	if err := server.Serve(listener); err != nil && !errors.Is(err, http.ErrServerClosed) {
		fmt.Fprintf(os.Stderr, "registry: %v\n", err)
		os.Exit(1)
	}
}

type nopWriter struct{}

func (nopWriter) Write(p []byte) (int, error) { return len(p), nil }
