// Wrapper module that builds a small in-memory OCI registry from go-containerregistry's
// pkg/registry (see main.go), for the local clusters' development function runtime.
module apiconnector.dev/tools/registry

go 1.24.0

require github.com/google/go-containerregistry v0.20.7
