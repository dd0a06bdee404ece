package venue

// PublicHeaders is implemented by venues whose CredentialHeaders include
// headers that keystile sets but whose values are not secret: timestamps,
// nonces, receive windows, signature-type and demo-trading flags.
//
// The gateway scrubs from every answer the values it sent in credential
// headers (API keys, signatures, passphrases, session tokens), because a
// venue may echo them. It leaves the values of the headers named here
// alone: venues echo timestamps as ordinary data (Bybit's "time", OKX's
// "ts", DMarket's creation dates), and rewriting them corrupts answers.
// A credential header not named here is treated as secret, so a header
// added to CredentialHeaders is scrubbed until it is declared public.
type PublicHeaders interface {
	PublicHeaders() []string
}
