// Command otelcol is an OpenTelemetry Collector distribution for patternbench's log-agent
// experiments: the filelog receiver, the otlphttp and debug exporters, the batch processor,
// the file_storage and health_check extensions, nothing else. Written by hand in the shape
// the collector's builder (ocb) generates; every collector module is at one release.
package main

import (
	"os"

	"go.opentelemetry.io/collector/component"
	"go.opentelemetry.io/collector/confmap"
	"go.opentelemetry.io/collector/confmap/provider/envprovider"
	"go.opentelemetry.io/collector/confmap/provider/fileprovider"
	"go.opentelemetry.io/collector/confmap/provider/yamlprovider"
	"go.opentelemetry.io/collector/otelcol"
)

// release names this distribution: contrib and core v0.165.0, core stable v1.71.0.
const release = "0.165.0"

// coreStable and contrib are the module versions components.go reports for each component.
const (
	coreUnstable = "v0.165.0"
	coreStable   = "v1.71.0"
	contrib      = "v0.165.0"
)

func main() {
	providers := []confmap.ProviderFactory{envprovider.NewFactory(), fileprovider.NewFactory(), yamlprovider.NewFactory()}
	modules := map[string]string{}
	for name, factory := range map[string]confmap.ProviderFactory{
		"envprovider": providers[0], "fileprovider": providers[1], "yamlprovider": providers[2],
	} {
		scheme := factory.Create(confmap.ProviderSettings{}).Scheme()
		modules[scheme] = "go.opentelemetry.io/collector/confmap/provider/" + name + " " + coreStable
	}
	set := otelcol.CollectorSettings{
		BuildInfo: component.BuildInfo{
			Command:     "otelcol",
			Description: "patternbench's OpenTelemetry Collector (filelog -> otlphttp)",
			Version:     release,
		},
		Factories: components,
		ConfigProviderSettings: otelcol.ConfigProviderSettings{
			ResolverSettings: confmap.ResolverSettings{ProviderFactories: providers},
		},
		ProviderModules:  modules,
		ConverterModules: []string{},
	}
	if err := otelcol.NewCommand(set).Execute(); err != nil {
		// cobra has already printed the error.
		os.Exit(1)
	}
}
