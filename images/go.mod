module patternbench.local/images

go 1.25.0
