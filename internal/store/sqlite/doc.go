// Package sqlite implements keystile's stores on an embedded SQLite database
// (modernc.org/sqlite: pure Go, no cgo), the single-machine default.
//
// The database runs in WAL mode with a busy timeout, foreign keys on and
// synchronous=FULL so a committed write survives power loss. Schema changes
// are embedded, numbered SQL migrations applied in order inside one
// transaction each; the applied version is kept in schema_migrations, and a
// database newer than this binary is refused rather than guessed at.
//
// Writes on the order path go through a group commit (batch.go): one
// writer goroutine runs the queued writes in one transaction on its own
// connection, in queue order, and commits them with a single fsync. An
// order's ledger write (Ledger, the ledger.Store: budget reservation,
// idempotency claim and intent record) is one of them; its settlement (the
// stored answer, the outcome record) is queued without waiting and rides
// the next commit. The audit log is kept in the same database (AuditLog,
// migration 0009), its chain sealed on the writer in commit order. Budget
// windows are summed exactly from running totals per minute, hour and UTC
// day (migration 0006) plus the entries of the window's first partial
// minute; the writer remembers a window's sum and writes the totals once
// per batch. State the writer keeps in memory (budget sums, the chain's
// head, the rows of the claims it stored) follows its transactions: put
// back when one does not commit, read again when another connection wrote
// (PRAGMA data_version).
//
// Security model: the tables hold only sealed values (ciphertexts, wrapped
// data keys, wrapped key-encryption keys), SHA-256 digests of client tokens
// and keyed fingerprints, plus Kraken nonce high-water marks keyed by a
// SHA-256 prefix of the API key (never the key). The file is created 0600 inside the 0700 data
// directory. secure_delete is on so deleted ciphertext is overwritten in the
// main file.
package sqlite
