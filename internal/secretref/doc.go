// Package secretref names secrets held outside keystile's vault, or inside
// it, without holding their values: a reference such as env:BINANCE_SECRET,
// file:/run/secrets/key, dotenv:.env#API_KEY, keyring:svc/user or
// vault:binance-main#secret is plain text that can sit in argv, configs and
// logs, because it reveals where a secret lives, never what it is.
//
// In the security model a reference is resolved only at the moment of use
// (keystile exec resolves the --env references of a legacy bot just before
// starting it), into a secret.Value that redacts itself everywhere. Parse
// never touches the outside world; Resolver.Resolve does, through the
// readers it is given, and its errors name the reference, never the value.
package secretref
