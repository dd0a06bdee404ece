package runexec

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/signal"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/keystile/keystile/internal/secret"
)

// Stripped reports whether a variable is never passed to a child:
// keystile's own master-key material and the admin second factor (an admin
// session or code would let the child act as the administrator).
func Stripped(name string) bool {
	switch name {
	case "KEYSTILE_MASTER_KEY", "KEYSTILE_PASSPHRASE_FILE", "KEYSTILE_MFA_SESSION", "KEYSTILE_TOTP":
		return true
	}
	return false
}

// ErrNoCommand is returned by Run without a command.
var ErrNoCommand = errors.New("runexec: no command to run")

// ExitError reports a child that did not exit 0. Code is its exit status,
// or 128+N when it was killed by signal N (the shell's convention).
type ExitError struct{ Code int }

func (e *ExitError) Error() string {
	return fmt.Sprintf("runexec: command exited with code %d", e.Code)
}

// ExitCode returns Code, so that a CLI can exit with it.
func (e *ExitError) ExitCode() int { return e.Code }

// ChildEnv is EnvPolicy{}.ChildEnv without the list of stripped names:
// parent minus the variables that look like credentials (LooksSecret) and
// minus every name in set, then set, in order.
func ChildEnv(parent []string, set []Var) []string {
	env, _ := EnvPolicy{}.ChildEnv(parent, set)
	return env
}

// Var is one variable set for the child.
type Var struct {
	Name  string
	Value secret.Value
}

// Options configure Run.
type Options struct {
	// Args is the command and its arguments. Required.
	Args []string
	// Env is the child's whole environment (see ChildEnv).
	Env []string
	// Dir is the working directory; "" means the current one.
	Dir string
	// Stdin, Stdout and Stderr are the child's streams. Output is masked.
	// If nil, the null device / discarded.
	Stdin          io.Reader
	Stdout, Stderr io.Writer
	// Mask are the values to mask in the child's output.
	Mask []secret.Value
	// Idle bounds how long a possible start of a masked value is held
	// back; if 0, DefaultIdle.
	Idle time.Duration
	// Signals are forwarded to the child. If nil, SIGINT, SIGTERM, SIGHUP,
	// SIGQUIT, SIGUSR1 and SIGUSR2.
	Signals []os.Signal
	// KillDelay is how long after ctx is done (and SIGTERM sent) the child
	// is killed. If 0, 10s.
	KillDelay time.Duration
}

// Run starts the child, forwards signals to it, masks its output and
// waits for it. It returns nil when the child exits 0, an *ExitError when
// it exits otherwise, and another error when it cannot be started.
func Run(ctx context.Context, o Options) error {
	if len(o.Args) == 0 || o.Args[0] == "" {
		return ErrNoCommand
	}
	path, err := exec.LookPath(o.Args[0])
	if err != nil {
		return fmt.Errorf("runexec: %w", err)
	}
	stdout, stderr := o.Stdout, o.Stderr
	if stdout == nil {
		stdout = io.Discard
	}
	if stderr == nil {
		stderr = io.Discard
	}
	mo := NewMasker(stdout, o.Mask, o.Idle)
	me := NewMasker(stderr, o.Mask, o.Idle)
	cmd := exec.CommandContext(ctx, path, o.Args[1:]...) // #nosec G204 -- running the operator's command is the point
	cmd.Args[0] = o.Args[0]
	cmd.Env = o.Env
	if cmd.Env == nil {
		cmd.Env = []string{}
	}
	cmd.Dir = o.Dir
	cmd.Stdin = o.Stdin
	cmd.Stdout, cmd.Stderr = mo, me
	var signalled atomic.Bool
	cmd.Cancel = func() error {
		if signalled.Load() {
			return nil // the child already got the signal that cancelled ctx
		}
		return cmd.Process.Signal(syscall.SIGTERM)
	}
	cmd.WaitDelay = o.KillDelay
	if cmd.WaitDelay <= 0 {
		cmd.WaitDelay = 10 * time.Second
	}
	sigs := o.Signals
	if sigs == nil {
		sigs = []os.Signal{syscall.SIGINT, syscall.SIGTERM, syscall.SIGHUP, syscall.SIGQUIT, syscall.SIGUSR1, syscall.SIGUSR2}
	}
	ch := make(chan os.Signal, 8)
	signal.Notify(ch, sigs...)
	defer signal.Stop(ch)
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("runexec: start %s: %w", o.Args[0], err)
	}
	done := make(chan struct{})
	go func() {
		for {
			select {
			case s := <-ch:
				signalled.Store(true)
				_ = cmd.Process.Signal(s)
			case <-done:
				return
			}
		}
	}()
	werr := cmd.Wait()
	close(done)
	_ = mo.Close()
	_ = me.Close()
	if werr == nil {
		return nil
	}
	var ee *exec.ExitError
	if errors.As(werr, &ee) {
		if ws, ok := ee.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
			return &ExitError{Code: 128 + int(ws.Signal())}
		}
		return &ExitError{Code: ee.ExitCode()}
	}
	return fmt.Errorf("runexec: %s: %w", o.Args[0], werr)
}
