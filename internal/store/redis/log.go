package redisstore

import (
	"context"
	"fmt"
	"log/slog"
	"strings"

	"github.com/redis/go-redis/v9"
)

// SetDriverLogger sends go-redis's own log lines (pool dial failures,
// reconnects) to l at warning level instead of the standard logger. The
// driver's logger is process-wide: call this once, from package app,
// before opening clients. go-redis never logs credentials; the lines name
// the server's address.
func SetDriverLogger(l *slog.Logger) {
	redis.SetLogger(driverLog{l})
}

type driverLog struct{ l *slog.Logger }

func (d driverLog) Printf(ctx context.Context, format string, v ...any) {
	d.l.WarnContext(ctx, "redis driver: "+strings.TrimSpace(fmt.Sprintf(format, v...)))
}
