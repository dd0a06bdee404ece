package runexec_test

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"net/url"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/keystile/keystile/internal/runexec"
	"github.com/keystile/keystile/internal/secret"
)

const canary = "CANARY-runexec-5e0c7a19+/x"

// TestMain doubles as the child: RUNEXEC_HELPER selects what it does.
func TestMain(m *testing.M) {
	switch os.Getenv("RUNEXEC_HELPER") {
	case "":
		os.Exit(m.Run())
	case "env":
		for _, kv := range os.Environ() {
			fmt.Println(kv)
		}
		os.Exit(0)
	case "bytewise":
		// Print the injected value one byte per write, on both streams.
		v := os.Getenv("INJECTED")
		for _, w := range []*os.File{os.Stdout, os.Stderr} {
			fmt.Fprint(w, "value=")
			for i := 0; i < len(v); i++ {
				_, _ = w.Write([]byte{v[i]})
				time.Sleep(time.Millisecond)
			}
			fmt.Fprintln(w, " hex="+hex.EncodeToString([]byte(v)))
		}
		os.Exit(0)
	case "exit":
		n, _ := strconv.Atoi(os.Getenv("RUNEXEC_CODE"))
		fmt.Println("exiting")
		os.Exit(n)
	case "signal":
		ch := make(chan os.Signal, 1)
		signal.Notify(ch, syscall.SIGUSR1)
		fmt.Println("ready")
		select {
		case <-ch:
			os.Exit(42)
		case <-time.After(10 * time.Second):
			os.Exit(3)
		}
	}
	os.Exit(99)
}

// syncBuffer is a goroutine-safe bytes.Buffer.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func leaks(s string, v string) bool {
	for _, e := range runexec.Encodings([]byte(v)) {
		if strings.Contains(s, e) {
			return true
		}
	}
	return false
}

func TestMasker(t *testing.T) {
	v := []byte(canary)
	tests := []struct {
		name   string
		writes []string
		want   string
	}{
		{"raw", []string{"a " + canary + " b\n"}, "a [REDACTED] b\n"},
		{"hex", []string{"h=" + hex.EncodeToString(v) + "\n"}, "h=[REDACTED]\n"},
		{"HEX", []string{"h=" + strings.ToUpper(hex.EncodeToString(v)) + "\n"}, "h=[REDACTED]\n"},
		{"base64", []string{"b=" + base64.StdEncoding.EncodeToString(v) + "\n"}, "b=[REDACTED]\n"},
		{"base64url raw", []string{"b=" + base64.RawURLEncoding.EncodeToString(v) + "\n"}, "b=[REDACTED]\n"},
		{"query escaped", []string{"q=" + url.QueryEscape(canary) + "&x\n"}, "q=[REDACTED]&x\n"},
		{"twice", []string{canary + canary}, "[REDACTED][REDACTED]"},
		{"split in two", []string{"x" + canary[:7], canary[7:] + "y\n"}, "x[REDACTED]y\n"},
		{"byte by byte", strings.Split("<"+canary+">\n", ""), "<[REDACTED]>\n"},
		{"near miss released", []string{canary[:10], "Z and more\n"}, canary[:10] + "Z and more\n"},
		{"no secret", []string{"hello ", "world\n"}, "hello world\n"},
		{"held short tail printed on close", []string{"ends with " + canary[:2]}, "ends with " + canary[:2]},
		{"held long tail masked on close", []string{"ends with " + canary[:12]}, "ends with [REDACTED]"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var out syncBuffer
			m := runexec.NewMasker(&out, []secret.Value{secret.FromString(canary), secret.FromString("short")}, time.Hour)
			for _, w := range tt.writes {
				if n, err := m.Write([]byte(w)); err != nil || n != len(w) {
					t.Fatalf("Write = %d, %v", n, err)
				}
			}
			if err := m.Close(); err != nil {
				t.Fatal(err)
			}
			if got := out.String(); got != tt.want {
				t.Fatalf("output %q, want %q", got, tt.want)
			}
			if _, err := m.Write([]byte("x")); !errors.Is(err, runexec.ErrClosed) {
				t.Fatalf("Write after Close: %v", err)
			}
		})
	}
}

func TestMaskerIdleFlush(t *testing.T) {
	var out syncBuffer
	m := runexec.NewMasker(&out, []secret.Value{secret.FromString(canary)}, 20*time.Millisecond)
	defer m.Close()
	// "C" could start the canary: held, then released by the idle timer.
	if _, err := m.Write([]byte("prompt> C")); err != nil {
		t.Fatal(err)
	}
	if got := out.String(); got != "prompt> " {
		t.Fatalf("before idle: %q", got)
	}
	deadline := time.Now().Add(5 * time.Second)
	for out.String() != "prompt> C" {
		if time.Now().After(deadline) {
			t.Fatalf("idle flush never happened: %q", out.String())
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// TestMaskerSlowDrip: a value written one byte at a time, each byte after
// the idle timer fired, leaks at most its first three bytes; the rest is
// masked. Ordinary text that merely paused after a possible start is
// released unchanged.
func TestMaskerSlowDrip(t *testing.T) {
	var out syncBuffer
	m := runexec.NewMasker(&out, []secret.Value{secret.FromString(canary)}, time.Millisecond)
	write := func(s string) {
		t.Helper()
		if _, err := m.Write([]byte(s)); err != nil {
			t.Fatal(err)
		}
	}
	write("split=")
	for i := range len(canary) {
		write(canary[i : i+1])
		time.Sleep(4 * time.Millisecond) // past the idle timer
	}
	write("\nok C")
	time.Sleep(4 * time.Millisecond)
	write("onnecting\n")
	if err := m.Close(); err != nil {
		t.Fatal(err)
	}
	got := out.String()
	line, rest, _ := strings.Cut(got, "\n")
	if !strings.HasPrefix(line, "split=") || !strings.HasSuffix(line, runexec.Mask) ||
		len(line) > len("split=")+3+len(runexec.Mask) || strings.Contains(got, canary[:4]) {
		t.Fatalf("slow drip: %q", got)
	}
	if rest != "ok Connecting\n" {
		t.Fatalf("paused ordinary text: %q", rest)
	}
}

func TestSkipped(t *testing.T) {
	got := runexec.Skipped([]secret.Value{secret.FromString(canary), secret.FromString("1234567")})
	if len(got) != 1 || got[0] != 1 {
		t.Fatalf("Skipped = %v", got)
	}
}

func TestChildEnv(t *testing.T) {
	parent := []string{"PATH=/bin", "KEYSTILE_MASTER_KEY=" + canary, "KEYSTILE_PASSPHRASE_FILE=/p", "KEYSTILE_TOKEN=old", "HOME=/h", "=weird"}
	got := runexec.ChildEnv(parent, []runexec.Var{{Name: "KEYSTILE_TOKEN", Value: secret.FromString("new")}, {Name: "API", Value: secret.FromString("v")}})
	want := []string{"PATH=/bin", "HOME=/h", "KEYSTILE_TOKEN=new", "API=v"}
	if strings.Join(got, "|") != strings.Join(want, "|") {
		t.Fatalf("ChildEnv = %q, want %q", got, want)
	}
}

func self(t *testing.T) string {
	t.Helper()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	return exe
}

func TestRunEnvironment(t *testing.T) {
	var out, errb syncBuffer
	env := runexec.ChildEnv([]string{"RUNEXEC_HELPER=env", "KEYSTILE_MASTER_KEY=" + canary, "KEEP=1"},
		[]runexec.Var{{Name: "INJECTED", Value: secret.FromString(canary)}})
	err := runexec.Run(context.Background(), runexec.Options{Args: []string{self(t)}, Env: env, Stdout: &out, Stderr: &errb,
		Mask: []secret.Value{secret.FromString(canary)}})
	if err != nil {
		t.Fatalf("Run: %v (stderr %q)", err, errb.String())
	}
	lines := strings.Split(strings.TrimSpace(out.String()), "\n")
	want := []string{"RUNEXEC_HELPER=env", "KEEP=1", "INJECTED=[REDACTED]"}
	if strings.Join(lines, "|") != strings.Join(want, "|") {
		t.Fatalf("child env %q, want %q", lines, want)
	}
}

func TestRunMasksSplitWrites(t *testing.T) {
	var out, errb syncBuffer
	env := runexec.ChildEnv([]string{"RUNEXEC_HELPER=bytewise"}, []runexec.Var{{Name: "INJECTED", Value: secret.FromString(canary)}})
	err := runexec.Run(context.Background(), runexec.Options{Args: []string{self(t)}, Env: env, Stdout: &out, Stderr: &errb,
		Mask: []secret.Value{secret.FromString(canary)}, Idle: time.Second})
	if err != nil {
		t.Fatalf("Run: %v", err)
	}
	for name, s := range map[string]string{"stdout": out.String(), "stderr": errb.String()} {
		if s != "value=[REDACTED] hex=[REDACTED]\n" {
			t.Errorf("%s = %q", name, s)
		}
		if leaks(s, canary) {
			t.Errorf("%s leaks the canary", name)
		}
	}
}

func TestRunExitCode(t *testing.T) {
	for _, code := range []int{0, 1, 7} {
		t.Run(strconv.Itoa(code), func(t *testing.T) {
			var out syncBuffer
			err := runexec.Run(context.Background(), runexec.Options{Args: []string{self(t)},
				Env: []string{"RUNEXEC_HELPER=exit", "RUNEXEC_CODE=" + strconv.Itoa(code)}, Stdout: &out})
			var ee *runexec.ExitError
			switch {
			case code == 0 && err != nil:
				t.Fatalf("Run: %v", err)
			case code != 0 && (!errors.As(err, &ee) || ee.ExitCode() != code):
				t.Fatalf("Run = %v, want exit code %d", err, code)
			}
			if out.String() != "exiting\n" {
				t.Fatalf("stdout %q", out.String())
			}
		})
	}
}

func TestRunForwardsSignals(t *testing.T) {
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	errc := make(chan error, 1)
	go func() {
		errc <- runexec.Run(context.Background(), runexec.Options{Args: []string{self(t)},
			Env: []string{"RUNEXEC_HELPER=signal"}, Stdout: w, Signals: []os.Signal{syscall.SIGUSR1}})
		w.Close()
	}()
	buf := make([]byte, 6)
	if _, err := r.Read(buf); err != nil || string(buf) != "ready\n" {
		t.Fatalf("child not ready: %q %v", buf, err)
	}
	// Signal ourselves: Run must pass it on to the child.
	if err := syscall.Kill(os.Getpid(), syscall.SIGUSR1); err != nil {
		t.Fatal(err)
	}
	var ee *runexec.ExitError
	if err := <-errc; !errors.As(err, &ee) || ee.Code != 42 {
		t.Fatalf("Run = %v, want exit 42 from the forwarded signal", err)
	}
}

func TestRunNoCommand(t *testing.T) {
	if err := runexec.Run(context.Background(), runexec.Options{}); !errors.Is(err, runexec.ErrNoCommand) {
		t.Fatal(err)
	}
	err := runexec.Run(context.Background(), runexec.Options{Args: []string{"/nonexistent/keystile-no-such-cmd"}})
	if err == nil || !strings.HasPrefix(err.Error(), "runexec: ") {
		t.Fatalf("Run = %v", err)
	}
}

func TestInjectionsRecord(t *testing.T) {
	dir := t.TempDir()
	if got, err := runexec.ReadInjections(dir); err != nil || got != nil {
		t.Fatalf("empty: %v %v", got, err)
	}
	at := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	for i := 0; i < runexec.MaxInjections+5; i++ {
		if err := runexec.RecordInjections(dir, []runexec.Injection{{Var: "V" + strconv.Itoa(i), Ref: "vault:c#f", Command: "bot", At: at}}); err != nil {
			t.Fatal(err)
		}
	}
	got, err := runexec.ReadInjections(dir)
	if err != nil || len(got) != runexec.MaxInjections || got[len(got)-1].Var != "V204" || !got[0].At.Equal(at) {
		t.Fatalf("ReadInjections = %d records, %v", len(got), err)
	}
	st, err := os.Stat(dir + "/" + runexec.InjectionsFile)
	if err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("record file mode: %v %v", st, err)
	}
}

func ExampleNewMasker() {
	m := runexec.NewMasker(os.Stdout, []secret.Value{secret.FromString("hunter2-hunter2")}, 0)
	fmt.Fprintln(m, "password is hunter2-hunter2")
	m.Close()
	// Output: password is [REDACTED]
}

func FuzzMasker(f *testing.F) {
	f.Add([]byte("a CANARY-fuzz-value b"), uint8(3))
	f.Add([]byte("CANARY-fuzzCANARY-fuzz-value"), uint8(1))
	f.Fuzz(func(t *testing.T, data []byte, chunk uint8) {
		const v = "CANARY-fuzz-value"
		var out syncBuffer
		m := runexec.NewMasker(&out, []secret.Value{secret.FromString(v)}, time.Hour)
		step := int(chunk%16) + 1
		for i := 0; i < len(data); i += step {
			if _, err := m.Write(data[i:min(i+step, len(data))]); err != nil {
				t.Fatal(err)
			}
		}
		_ = m.Close()
		if strings.Contains(out.String(), v) {
			t.Fatalf("value leaked: %q", out.String())
		}
		// Without the value in the input, output equals input.
		if !bytes.Contains(data, []byte("CANARY-fuzz")) && !strings.Contains(out.String(), "REDACTED") && out.String() != string(data) {
			t.Fatalf("output %q differs from input %q", out.String(), data)
		}
	})
}

// TestMaskerWriteCountsEveryByte: Write reports len(p) also when the bytes
// continue a value whose start an idle flush already released. Returning
// less made io.Copy (os/exec's pipe copier) stop with ErrShortWrite and
// close the pipe, so a bot printing a secret slowly died of SIGPIPE
// (seen as exit 141 in the exec CLI script under load).
func TestMaskerWriteCountsEveryByte(t *testing.T) {
	var out bytes.Buffer
	m := runexec.NewMasker(&out, []secret.Value{secret.FromString(canary)}, time.Hour)
	write := func(p string) {
		t.Helper()
		n, err := m.Write([]byte(p))
		if err != nil || n != len(p) {
			t.Fatalf("Write(%q) = %d, %v; want %d, nil", p, n, err, len(p))
		}
	}
	write("split=")
	for i := 0; i < len(canary); i++ {
		write(canary[i : i+1])
		if err := m.Flush(); err != nil { // as the idle timer does between slow writes
			t.Fatal(err)
		}
	}
	write("\nafter\n")
	if err := m.Close(); err != nil {
		t.Fatal(err)
	}
	if strings.Contains(out.String(), canary) || !strings.HasSuffix(out.String(), "\nafter\n") {
		t.Fatalf("output %q", out.String())
	}
}
