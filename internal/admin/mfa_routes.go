package admin

// MFAClass says whether an admin route needs the second factor once one is
// enrolled (keystile mfa enroll).
type MFAClass int

// MFA classes.
const (
	// MFANever: reads, protective actions (revoke, freeze) and the MFA
	// endpoints that work without a second factor.
	MFANever MFAClass = iota + 1
	// MFAAlways: the gate asks for an admin session or a code before the
	// handler runs.
	MFAAlways
	// MFAConditional: the handler calls RequireMFA itself when the request
	// asks for something sensitive (a token with order or wallet scopes).
	MFAConditional
	// MFASelf: the handler checks a code it is given itself (mfa login,
	// enrolment confirmation); a session does not count there.
	MFASelf
)

func (c MFAClass) String() string {
	switch c {
	case MFANever:
		return "never"
	case MFAAlways:
		return "always"
	case MFAConditional:
		return "conditional"
	case MFASelf:
		return "self"
	}
	return "unclassified"
}

// Sensitive actions, as named in audit events and error messages.
const (
	ActionSecretSet        = "secret.set" // set and rotate
	ActionSecretRevoke     = "secret.revoke"
	ActionSecretRemove     = "secret.remove"
	ActionVaultRekey       = "vault.rekey"
	ActionTokenCreate      = "token.create" // with scopes beyond *.read
	ActionTokenRotate      = "token.rotate" // of a token with scopes beyond *.read
	ActionTokenUnfreeze    = "token.unfreeze"
	ActionOAuthLogin       = "oauth.login" // stores a refresh token in a credential
	ActionMFALogin         = "mfa.login"
	ActionMFAConfirm       = "mfa.enroll.confirm"
	ActionMFAReset         = "mfa.reset"
	ActionMFARecoveryCodes = "mfa.recovery_codes"
	ActionCACreate         = "ca.create" // a CA the bots' TLS clients trust
	ActionCARotate         = "ca.rotate"
	// ActionPanicClear is the kill switch's clear (keystile panic clear).
	ActionPanicClear = "panic.clear"
	// ActionDetectRelease lifts a detector's hold (keystile detect
	// release): like unfreezing, it gives power back.
	ActionDetectRelease = "detect.release"
)

// Actions that need no second factor, as named in audit records.
const (
	ActionTokenRevoke = "token.revoke"
	ActionTokenFreeze = "token.freeze"
	ActionAlertTest   = "alert.test"
)

// MFARoute is one route's classification. Action names what the route
// does, in MFA refusals and in the audit record of the request (admin.<Action>).
type MFARoute struct {
	Class  MFAClass
	Action string
}

// MFARoutes classifies every admin route, by its ServeMux pattern. The
// gate (Server.mfaGate) looks each request's route up here and refuses a
// route that is missing (500, unclassified_route): a new route does not
// work until it is classified, and TestMFARouteTable lists them all.
//
// Not gated, and why: reads (status, lists, metadata) reveal no value; a
// token revoke or freeze, and engaging the kill switch (keystile panic),
// only take power away and must stay instant in an incident (containment
// is never slowed by a second factor); the MFA endpoints that start an enrolment (refused while
// one is active), check their own code (login, confirm) or end a session.
// Policies and venues are not changed through the admin API (they come
// from keystile.yaml, reloaded on SIGHUP): whoever can write that file
// owns the data directory already.
func MFARoutes() map[string]MFARoute {
	never := MFARoute{Class: MFANever}
	return map[string]MFARoute{
		"GET " + PathStatus:                      never,
		"GET " + PathSecrets:                     never,
		"GET " + PathSecrets + "/{name}":         never,
		"PUT " + PathSecrets + "/{name}":         {MFAAlways, ActionSecretSet},
		"POST " + PathSecrets + "/{name}/revoke": {MFAAlways, ActionSecretRevoke},
		"DELETE " + PathSecrets + "/{name}":      {MFAAlways, ActionSecretRemove},
		"POST " + PathRekey:                      {MFAAlways, ActionVaultRekey},
		"POST " + PathTokens:                     {MFAConditional, ActionTokenCreate},
		"GET " + PathTokens:                      never,
		"GET " + PathTokens + "/{id}":            never,
		"POST " + PathTokens + "/{id}/revoke":    {MFANever, ActionTokenRevoke},
		"POST " + PathTokens + "/{id}/freeze":    {MFANever, ActionTokenFreeze},
		"POST " + PathTokens + "/{id}/unfreeze":  {MFAAlways, ActionTokenUnfreeze},
		"POST " + PathTokens + "/{id}/rotate":    {MFAConditional, ActionTokenRotate},
		"POST " + PathOAuth + "/{venue}/login":   {MFAAlways, ActionOAuthLogin},
		"GET " + PathMFA:                         never,
		"POST " + PathMFA + "/enroll":            never,
		"POST " + PathMFA + "/enroll/confirm":    {MFASelf, ActionMFAConfirm},
		"POST " + PathMFA + "/login":             {MFASelf, ActionMFALogin},
		"POST " + PathMFA + "/logout":            never,
		"POST " + PathMFA + "/reset":             {MFAAlways, ActionMFAReset},
		"POST " + PathMFA + "/recovery-codes":    {MFAAlways, ActionMFARecoveryCodes},
		// A test alert goes to the configured sinks only and carries no
		// secret: no second factor.
		"GET " + PathCA:              never,
		"POST " + PathCA:             {MFAAlways, ActionCACreate},
		"POST " + PathCA + "/rotate": {MFAAlways, ActionCARotate},
		"GET " + PathAlerts:          never,
		"POST " + PathAlertsTest:     {MFANever, ActionAlertTest},
		// The kill switch: engaging it is containment (never gated);
		// clearing it gives every bot its power back.
		"GET " + PathKillSwitch:  never,
		"POST " + PathPanic:      never,
		"POST " + PathPanicClear: {MFAAlways, ActionPanicClear},
		// The detector: releasing a throttle or a venue or credential
		// freeze is like unfreezing a token.
		"GET " + PathDetect:                                never,
		"GET " + PathDetect + "/profiles/{id}":             never,
		"DELETE " + PathDetect + "/holds/{kind}/{subject}": {MFAAlways, ActionDetectRelease},
	}
}

// ReadOnlyScopes reports whether token scopes grant only read operations
// (each scope's last segment is "read": market.read, order.read, *.read),
// so that minting such a token needs no second factor. No scopes means the
// defaults, which include order.*.
func ReadOnlyScopes(scopes []string) bool {
	if len(scopes) == 0 {
		return false
	}
	for _, s := range scopes {
		i := len(s) - len(".read")
		if i <= 0 || s[i:] != ".read" {
			return false
		}
	}
	return true
}
