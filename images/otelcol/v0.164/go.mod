module patternbench.local/otelcol

go 1.25.0

require (
	github.com/open-telemetry/opentelemetry-collector-contrib/extension/healthcheckextension v0.164.1
	github.com/open-telemetry/opentelemetry-collector-contrib/extension/storage/filestorage v0.164.1
	github.com/open-telemetry/opentelemetry-collector-contrib/receiver/filelogreceiver v0.164.1
	go.opentelemetry.io/collector/component v1.70.0
	go.opentelemetry.io/collector/confmap v1.70.0
	go.opentelemetry.io/collector/confmap/provider/envprovider v1.70.0
	go.opentelemetry.io/collector/confmap/provider/fileprovider v1.70.0
	go.opentelemetry.io/collector/confmap/provider/yamlprovider v1.70.0
	go.opentelemetry.io/collector/connector v0.164.0
	go.opentelemetry.io/collector/exporter v1.70.0
	go.opentelemetry.io/collector/exporter/debugexporter v0.164.0
	go.opentelemetry.io/collector/exporter/otlphttpexporter v0.164.0
	go.opentelemetry.io/collector/extension v1.70.0
	go.opentelemetry.io/collector/otelcol v0.164.0
	go.opentelemetry.io/collector/processor v1.70.0
	go.opentelemetry.io/collector/processor/batchprocessor v0.164.0
	go.opentelemetry.io/collector/receiver v1.70.0
	go.opentelemetry.io/collector/service v0.164.0
)
