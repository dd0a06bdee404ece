// Package venue defines what keystile knows about an upstream API: its
// operations table (method + path → named operation) and how to
// authenticate a request to it. One subpackage per venue type implements
// the contract (stake, dmarket, betfair, stapi, generic).
//
// Security model: a venue's Authenticate runs on the exact outbound request
// and body bytes, once per attempt (so a retried request is re-signed with a
// fresh timestamp), and reaches the credential only through the Credentials
// function, i.e. inside vault.WithCredential. Operations are named so that
// token scopes and policies can refuse a request before anything is signed;
// a route missing from the table is unmapped and denied by default.
// CredentialHeaders lists the headers a bot must never send through
// keystile: the gateway strips them, so a bot cannot smuggle its own
// credentials or signatures past the firewall.
package venue
