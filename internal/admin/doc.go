// Package admin is the administrative API that the keystile CLI uses to
// talk to a running `keystile serve`: JSON over HTTP on a unix socket.
//
// Security model: the socket lives in the 0700 data directory and is
// created mode 0600. Every connection's peer credentials (SO_PEERCRED) are
// read by the kernel, not claimed by the client; a caller whose uid is not
// the server's own or listed in admin.allowed_uids gets 403 and is logged.
// The client refuses a socket owned by another uid, so a CLI never hands
// secret values to an impostor server. Secret values travel only from CLI to
// server (secret set/rotate); no endpoint returns one. Request bodies are
// size-limited and never logged.
package admin
