package venue

import (
	"context"
	"sync"
)

// Attempt carries what a venue's Authenticate used on one request (for
// instance the session token), so that RefreshSession can invalidate that
// exact token and not a newer one another request already obtained.
type Attempt struct {
	mu      sync.Mutex
	session any
}

type attemptKey struct{}

// WithAttempt returns a context holding a fresh Attempt. The gateway calls
// it once per bot request.
func WithAttempt(ctx context.Context) context.Context {
	return context.WithValue(ctx, attemptKey{}, &Attempt{})
}

// SetSession records the session value used by the current attempt.
func SetSession(ctx context.Context, v any) {
	if a, ok := ctx.Value(attemptKey{}).(*Attempt); ok {
		a.mu.Lock()
		a.session = v
		a.mu.Unlock()
	}
}

// SessionUsed returns the session value recorded by SetSession, if any.
func SessionUsed(ctx context.Context) (any, bool) {
	a, ok := ctx.Value(attemptKey{}).(*Attempt)
	if !ok {
		return nil, false
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.session, a.session != nil
}

// Risk orders operations from least to most sensitive, so that a request
// that does several things (a GraphQL document, a JSON-RPC batch) is
// classified as its most sensitive part.
func Risk(op string) int {
	switch op {
	case OpMarketRead, OpMediaRead:
		return 1
	case OpAccountRead, OpOrderRead:
		return 2
	case OpOrderCancel, OpOrderCancelAll:
		return 3
	case OpOrderPlace, OpMediaWrite:
		return 4
	case OpWalletTransfer:
		return 5
	case OpWalletWithdraw:
		return 6
	case OpAPIKeyManage:
		return 7
	default:
		return 8
	}
}

// MostSensitive returns the riskiest of ops ("" for none).
func MostSensitive(ops ...string) string {
	best := ""
	for _, op := range ops {
		if best == "" || Risk(op) > Risk(best) {
			best = op
		}
	}
	return best
}
