"""What is built on a fresh machine: Kubernetes' binaries from Go modules, the data plane's
images as OCI archives, the OpenTelemetry Collector."""
