-- The order path: budgets, idempotency claims, the audit log and its
-- checkpoints, written together by the ledger (ledger.go, audit.go).
SELECT 1;
