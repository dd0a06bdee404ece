package cli

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"os"
	osexec "os/exec"
	"os/signal"
	"path/filepath"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/rogpeppe/go-internal/testscript"
)

func TestMain(m *testing.M) {
	testscript.Main(m, map[string]func(){
		"keystile": func() {
			ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
			code := Main(ctx, os.Args[1:], os.Stdin, os.Stdout, os.Stderr)
			stop()
			os.Exit(code)
		},
	})
}

// TestScripts runs the CLI scripts in testdata/script (txtar files).
func TestScripts(t *testing.T) {
	testscript.Run(t, testscript.Params{
		Dir: filepath.Join("testdata", "script"),
		Setup: func(env *testscript.Env) error {
			// Short paths: unix socket paths are limited to ~100 bytes.
			dir, err := os.MkdirTemp("", "ks")
			if err != nil {
				return err
			}
			env.Defer(func() { os.RemoveAll(dir) })
			env.Setenv("KEYSTILE_DATA_DIR", filepath.Join(dir, "d"))
			env.Setenv("D", filepath.Join(dir, "d"))
			env.Setenv("HOME", env.WorkDir)
			return nil
		},
		Cmds: map[string]func(ts *testscript.TestScript, neg bool, args []string){
			// waitsock PATH: wait up to 20 s for a unix socket to accept.
			"waitsock": func(ts *testscript.TestScript, neg bool, args []string) {
				if len(args) != 1 {
					ts.Fatalf("usage: waitsock PATH")
				}
				deadline := time.Now().Add(20 * time.Second)
				for time.Now().Before(deadline) {
					if c, err := net.Dial("unix", ts.MkAbs(args[0])); err == nil {
						c.Close()
						return
					}
					time.Sleep(20 * time.Millisecond)
				}
				ts.Fatalf("socket %s never accepted", args[0])
			},
			// nosecret DIR VALUE: no file below DIR contains VALUE or its
			// hex / base64 encodings.
			"nosecret": func(ts *testscript.TestScript, neg bool, args []string) {
				if len(args) != 2 {
					ts.Fatalf("usage: nosecret DIR VALUE")
				}
				v := []byte(args[1])
				needles := [][]byte{v, []byte(hex.EncodeToString(v)), []byte(base64.StdEncoding.EncodeToString(v)), []byte(base64.RawURLEncoding.EncodeToString(v))}
				n := 0
				err := filepath.Walk(ts.MkAbs(args[0]), func(p string, fi os.FileInfo, err error) error {
					if err != nil || fi.IsDir() || fi.Mode()&os.ModeSocket != 0 {
						return err
					}
					b, err := os.ReadFile(p)
					if err != nil {
						return err
					}
					n++
					for _, nd := range needles {
						if bytes.Contains(b, nd) {
							return fmt.Errorf("%s contains the secret", p)
						}
					}
					return nil
				})
				if err != nil {
					ts.Fatalf("%v", err)
				}
				if n == 0 {
					ts.Fatalf("no files under %s", args[0])
				}
			},
			// chown UID PATH: change a file's owner (the test runs as root
			// in CI; skipped otherwise).
			"chown": func(ts *testscript.TestScript, neg bool, args []string) {
				if os.Getuid() != 0 {
					ts.Logf("not root: cannot chown")
					return
				}
				uid, _ := strconv.Atoi(args[0])
				ts.Check(os.Lchown(ts.MkAbs(args[1]), uid, uid))
			},
			// exitcode N PROG ARGS...: run PROG and require exit code N.
			"exitcode": func(ts *testscript.TestScript, neg bool, args []string) {
				if len(args) < 2 {
					ts.Fatalf("usage: exitcode N PROG [ARGS...]")
				}
				want, err := strconv.Atoi(args[0])
				ts.Check(err)
				err = ts.Exec(args[1], args[2:]...)
				got := 0
				var ee *osexec.ExitError
				if errors.As(err, &ee) {
					got = ee.ExitCode()
				} else if err != nil {
					ts.Fatalf("%v", err)
				}
				if got != want {
					ts.Fatalf("exit code %d, want %d", got, want)
				}
			},
		},
		Condition: func(cond string) (bool, error) {
			if cond == "root" {
				return os.Getuid() == 0, nil
			}
			return false, fmt.Errorf("unknown condition %q", cond)
		},
	})
}
