// Package secret holds the types that carry secret bytes through keystile.
//
// Security model: a secret value is never turned into text by accident.
// Value's String, GoString, Format (every verb) and LogValue print REDACTED;
// JSON, text, binary and gob marshalling fail with ErrMarshal, so a secret
// placed in a struct that is later logged or serialised cannot leak through
// it. Equality is constant-time. Wipe overwrites the bytes in place
// (best-effort: the Go runtime may have copied them before). Code that needs
// the bytes, such as a signer, calls Reveal and keeps the slice only for the
// duration of the operation.
package secret
