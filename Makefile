# Shortcuts for long commands; everything else is the go tool.

.PHONY: bench bench-setup

# The end-to-end benchmark: writes docs/benchmarks/results.md and latency.svg.
# `go run ./bench -short` is the 2-minute version.
bench: bench-setup
	go run ./bench

# nginx from the distribution's package (apt-get), so its rows are never
# skipped; does nothing when nginx is installed.
bench-setup:
	bash bench/setup.sh
