"""The consumer-side orchestrator controller, its Kubernetes client layer, and the CLI."""
