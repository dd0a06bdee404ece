// Package cli implements the keystile command line: subcommands, flags,
// human and JSON output, exit codes (0 ok, 1 failure, 2 usage error). It
// holds no logic of its own; it calls package app and the admin client.
//
// Security model: secret values never come from argv (they would land in
// shell history and in /proc/<pid>/cmdline). They come from a no-echo
// prompt, FIELD=VALUE lines on stdin, a file, an environment variable or the
// OS keyring, and an argument that looks like a value is refused with an
// explanation. No command prints a secret value.
package cli
