-- Vault, tokens, nonces, admin MFA, alert digests, kill switch and
-- detector state (store/postgres: vault.go, token.go, ...).
SELECT 1;
