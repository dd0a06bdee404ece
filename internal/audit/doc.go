// Package audit is keystile's tamper-evident audit log: the Event every
// gateway decision produces, the hash-chained append-only Log that makes
// events durable, signed checkpoints, Verify, and the stores and sinks
// that keep or copy records.
//
// # Security model
//
// A record carries identifiers, the decision and the rule that made it,
// normalized order fields, statuses and timing: never a token, a
// credential, a signature or a request body. Token public ids and source
// addresses are stored only as hex HMAC-SHA256 under the log's identity
// key (derived from the vault), so the log links requests of one token
// without naming it; (*Log).TokenHash lets an operator who holds the vault
// find them. As a last line of defence any kst_live_/kst_test_ token text
// in a string field is replaced by kst_REDACTED before encoding; callers
// still pass scrubbed text.
//
// Each record holds the SHA-256 of the previous record's canonical bytes
// (prev), and its own (hash), so changing, deleting, inserting or
// reordering a record breaks the chain at that record. Every
// CheckpointEvery records, and on Close, the writer stores a checkpoint
// {seq, hash, time} signed with Ed25519 (key derived from the vault):
// rewriting the chain, or cutting its tail back past a checkpoint, is then
// detectable by anyone holding the public key. Records after the last
// checkpoint are chained but not yet signed (Report.Unsigned).
//
// Before a write operation is forwarded the gateway calls Intent, which
// returns only once the intent record is durable (fsynced); on error the
// write is refused. Outcome records (Record, the Sink method) are queued
// and written without making the request wait.
//
// # Canonical encoding
//
// A record is one line of JSON produced by this package's own encoder,
// with exactly these fields in this order, all always present except the
// four marked optional:
//
//	seq (unsigned integer), time (string), kind, request_id, token, source,
//	venue, operation, method, path, instrument, side, type, quantity,
//	price, notional, client_order_id, decision, rule (strings),
//	status, upstream_status (integers), venue_order_id (string),
//	latency_ns (integer), error, actor (optional), reason (optional),
//	detail (optional), evidence (detect records only), prev, hash (strings)
//
// actor, reason and detail are written only when not empty (action
// records: who pulled a lever, why, and what it did); records written
// before they existed, and every request record, have none of them, so
// their canonical bytes are unchanged. Kinds are intent, outcome, action
// and detect.
//
// Records of kind "detect" (findings of the anomaly detector and the
// actions it took, written by Log.Detect) always have the string field
// evidence, right before prev (after detail when that is present);
// records of the other kinds (intent, outcome, action) never have it. In a detect record, operation is
// detect.<action> (or detect.finding when no action was taken), rule is
// detect.<detector>, decision is the finding's severity and evidence is
// the detector's JSON evidence (observed value, baseline, triggering
// request ids; never a secret or a source address).
//
// No whitespace; integers in decimal without leading zeros or sign
// except a minus for negatives; time as UTC "2006-01-02T15:04:05.000000000Z"
// (always nine fractional digits). Strings are valid UTF-8 (invalid bytes
// become U+FFFD before encoding); inside quotes `"` and `\` are preceded by
// a backslash, bytes below 0x20 are written \u00xx with lowercase hex, and
// every other byte is copied unchanged (no other escapes). prev and hash
// are 64 lowercase hex digits; the first record's prev is 64 zeros.
//
// hash is SHA-256 of the record's canonical bytes without the hash field
// (the same bytes with `,"hash":"…"` removed before the closing brace).
// Stores keep the canonical bytes with the hash. Verify decodes the stored
// bytes, re-encodes them, and requires the result to be byte-identical, the
// hash to match, seq to follow its predecessor and prev to equal its hash.
//
// A checkpoint is {"checkpoint":SEQ,"hash":"HEX","time":"TIME","sig":"HEX"}
// encoded the same way; sig is the Ed25519 signature of the ASCII bytes
// "keystile audit checkpoint v1", a zero byte, then the checkpoint's
// canonical bytes without the sig field. In a JSONL file checkpoints are
// lines of their own after the records they cover; they are told from
// records by their leading `{"checkpoint":`.
//
// # Stores
//
// Log seals records with a Chain on its own writer goroutine and hands
// each batch to its Store. SQLiteStore keeps records and checkpoints in
// their own SQLite database (WAL, synchronous=FULL), one transaction per
// batch. keystile's default keeps them in the main database instead, in
// tables of the same shape (store/sqlite.AuditLog seals with a Chain on
// that database's writer, so an order's intent record shares a
// transaction with its budget reservation and idempotency claim);
// OpenSQLiteReader and Verify read either. JSONLStore keeps one
// line per record or checkpoint in a file, one write and fsync per batch;
// a torn last line (never acknowledged) is cut off when it is reopened.
// WriterMirror copies lines to any io.Writer (stdout); it is not durable.
package audit
