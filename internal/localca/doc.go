// Package localca is keystile's own certificate authority: it issues the
// short-lived server certificates with which the forward proxy terminates a
// bot's TLS (HTTPS_PROXY mode) and, optionally, the gateway's listener
// certificate.
//
// Security model:
//
//   - The CA's private key (an ECDSA P-256 scalar, the curve every TLS
//     stack a bot uses accepts: Go, Node/OpenSSL, Python) lives only in
//     the vault, as the credential CredentialName, sealed like any venue
//     key. It is opened inside vault.WithCredential for the moment it takes
//     to sign a leaf and never written anywhere in clear. The vault's log
//     redactor learns it like every other credential value, and the leak
//     scanner finds it by fingerprint.
//   - The CA certificate is public. It is kept next to the data as a PEM
//     file (the path given in Options.CertFile) and bound to the vault's
//     key: Load refuses a certificate whose public key is not the vault
//     key's, so replacing the file cannot make keystile present another
//     CA. Keeping the certificate out of the vault keeps its bytes (and its
//     subject) out of the set of secret values the redactor scrubs.
//   - The CA may sign only leaves (path length 0). Optionally it carries
//     name constraints (CreateOptions.Constrain): clients then refuse any
//     certificate it signs for another name, so even a stolen CA key cannot
//     impersonate hosts outside the list. Without constraints, bots should
//     trust it per process (NODE_EXTRA_CA_CERTS, SSL_CERT_FILE,
//     REQUESTS_CA_BUNDLE), never in the system store.
//   - Leaves are minted on demand per set of names (one venue host, or the
//     gateway's names), each with a fresh P-256 key held only in memory,
//     valid for Options.LeafTTL (default 24 h), renewed after two thirds of
//     it, and cached. Rotate replaces the CA (a new vault version) and
//     drops every cached leaf.
package localca
