// Package storetest holds the contract suites of the stores the domain
// packages declare (vault.Store, token.Store, kraken.NonceStore, ...):
// exported functions that exercise a store through its interface only,
// run by each implementation's tests (store/sqlite, store/postgres), so
// that every backend keeps the same promises (atomicity, the sentinel
// errors, exact round trips, concurrency).
//
// Each suite takes an open function that returns a store on a fresh,
// empty database owned by the test. The suites check what the contract
// says and nothing of a backend's own: reopening a file, schema checks
// and cross-replica behaviour stay in the backends' own tests.
//
// Security model: the suites handle only fabricated sealed bytes and
// digests, as the stores do.
package storetest
