// Command bench measures what keystile costs on the request path, against
// the alternatives, on this machine and in one run (issue #7).
//
//	make bench-setup          # once: nginx from the Debian package (bench/setup.sh)
//	go run ./bench            # full run, writes docs/benchmarks/results.md and latency.svg
//	go run ./bench -short     # under 2 minutes on 2 cores
//	go run ./bench -only proxy,keystile-full -duration 10s
//
// One run starts a TLS 1.3 upstream on loopback that answers Binance's
// ticker and order routes (this binary re-executed in an "upstream" role)
// and measures, each as a process of its own so that its CPU time and
// memory can be read from /proc: direct to the upstream; a bare
// httputil.ReverseProxy with a tuned keep-alive pool (this binary in a
// "proxy" role); nginx (installed by bench/setup.sh; the row says how when
// it is missing); and the real keystile binary
// (built with go build ./cmd/keystile, set up with its
// own CLI: init, serve, secret set from stdin, token create) with only token checks on a
// market-data read, and with everything on (policy, signing, durable audit,
// idempotency: one durable write per order) on order placement, plus
// ablations of the order row (-only keystile-sign, keystile-policy,
// keystile-audit), each main row twice: through the gateway's URL (reverse
// proxy) and as an unmodified SDK with HTTPS_PROXY would reach it (forward
// proxy: CONNECT with the token, TLS terminated by keystile with a
// certificate from its local CA, exported with `keystile ca export`, the
// venue's real URL). The everything-on order row runs once more as two
// keystile replicas sharing PostgreSQL and Redis (keystile-replicas,
// replicas.go: a fresh schema per run on KEYSTILE_BENCH_POSTGRES, default
// postgres://postgres@127.0.0.1:5432/test?sslmode=disable, Redis from
// KEYSTILE_BENCH_REDIS, default redis://127.0.0.1:6379/0, the load spread
// round-robin; skipped with a note when either is unreachable). The
// keystile rows check before
// measuring that what they configure is active (a policy denial, an
// idempotent replay, valid signatures at the upstream) and, after, that
// `keystile audit verify` accepts the log.
//
// The load generator runs in this process: a closed loop with -conns
// keep-alive clients gives the saturation throughput; an open loop then
// offers fixed rates (fractions of the bare proxy's saturation, the same
// for every row) on a schedule that does not wait for answers, and
// measures each latency from the request's scheduled send time, so a
// system that queues cannot hide it (no coordinated omission). Latencies go
// into log-linear histograms (under 1 % error) for p50 to p99.9.
//
// Everything listens on 127.0.0.1 only; every process started is ended
// (process groups, parent-death signal) and the temp dir removed.
package main
