//go:build apiconnector_overlay

// Added to provider-kubernetes' cmd/provider at build time (tools/build.sh builds a copy of
// the module with this file in it): its main has no flags for the ports controller-runtime binds, 9443
// (webhooks) and :8080 (metrics) on every interface, so two local providers, or one beside
// anything else on those ports, could not run. These environment variables move them:
//
//	WEBHOOK_PORT=<port>                  controller-runtime's webhook.DefaultPort
//	METRICS_BIND_ADDRESS=<host:port>     its metricsserver.DefaultBindAddress ("0": off)
//
// Unset, the provider binds what it always does.
package main

import (
	"fmt"
	"os"
	"strconv"

	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"
	"sigs.k8s.io/controller-runtime/pkg/webhook"
)

func init() {
	if v := os.Getenv("WEBHOOK_PORT"); v != "" {
		port, err := strconv.Atoi(v)
		if err != nil || port < 1 || port > 65535 {
			fmt.Fprintf(os.Stderr, "provider-kubernetes: WEBHOOK_PORT must be a port number, not %q\n", v)
			os.Exit(2)
		}
		webhook.DefaultPort = port
	}
	if v := os.Getenv("METRICS_BIND_ADDRESS"); v != "" {
		metricsserver.DefaultBindAddress = v
	}
}
