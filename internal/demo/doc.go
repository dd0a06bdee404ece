// Package demo runs keystile end to end on loopback with nothing but the
// binary: it starts the venue emulators (package sandbox) over TLS with a
// throwaway CA, initialises a temporary data directory, starts a real
// keystile server (vault, tokens, gateway, admin socket), stores the
// emulators' credentials in the vault through the admin API, mints one
// kst_test_ token, and runs a scripted bot that reads balances and places
// orders on every seed venue through the gateway, holding only that token.
// It then revokes the token and shows the very next request refused, and
// finally checks that no credential value was written anywhere in the data
// directory.
//
// Security model: the credentials are the sandbox's throwaway values; the
// bot never sees them (it only holds the kst_ token), and the demo's final
// sweep proves they did not reach disk.
package demo
