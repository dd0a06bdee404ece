# Shortcuts for long commands; everything else is the go tool.

.PHONY: bench

# The end-to-end benchmark: writes docs/benchmarks/results.md and latency.svg.
# `go run ./bench -short` is the 2-minute version.
bench:
	go run ./bench
