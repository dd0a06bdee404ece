#!/usr/bin/env bash
# The benchmark's set-up: nginx from the distribution's package, so that
# the nginx rows of `go run ./bench` are measured, never skipped. Safe to
# run again (does nothing when nginx is on PATH). Needs root or sudo for
# apt-get (Debian, Ubuntu); elsewhere install nginx with the system's
# package manager. The bench starts its own nginx processes with its own
# configuration on free loopback ports; a system nginx service the package
# may start does not take part.
set -euo pipefail
if command -v nginx >/dev/null 2>&1 || [ -x /usr/sbin/nginx ]; then
	PATH="$PATH:/usr/sbin" nginx -v
	exit 0
fi
if ! command -v apt-get >/dev/null 2>&1; then
	echo "bench setup: no apt-get here; install nginx with your package manager" >&2
	exit 1
fi
sudo=""
if [ "$(id -u)" -ne 0 ]; then
	sudo="sudo"
fi
if ! $sudo apt-get install -y nginx; then
	$sudo apt-get update
	$sudo apt-get install -y nginx
fi
PATH="$PATH:/usr/sbin" nginx -v
