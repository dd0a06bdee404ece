package doctor

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"syscall"
)

// owner returns the uid owning fi, or -1.
func owner(fi fs.FileInfo) int {
	if st, ok := fi.Sys().(*syscall.Stat_t); ok {
		return int(st.Uid)
	}
	return -1
}

func (r *run) dataDir() Check {
	c := Check{ID: "datadir.permissions", Title: "data directory is private to its owner", Severity: High,
		Fix: fmt.Sprintf("chown $(id -u) %[1]s && chmod 700 %[1]s && chmod 600 %[1]s/*", r.DataDir)}
	if r.DataDir == "" {
		c.Result, c.Detail = Skip, "no data directory given"
		return c
	}
	fi, err := os.Stat(r.DataDir)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		c.Result, c.Detail, c.Fix = Fail, r.DataDir+" does not exist", "run `keystile init`"
		return c
	case err != nil:
		c.Result, c.Detail = Fail, err.Error()
		return c
	case !fi.IsDir():
		c.Result, c.Detail = Fail, r.DataDir+" is not a directory"
		return c
	}
	var bad []string
	if u := owner(fi); u != r.UID {
		bad = append(bad, fmt.Sprintf("%s is owned by uid %d, not by you (uid %d)", r.DataDir, u, r.UID))
	}
	if m := fi.Mode().Perm(); m&0o077 != 0 {
		bad = append(bad, fmt.Sprintf("%s has mode %04o: group or others can enter it", r.DataDir, m))
	}
	entries, err := os.ReadDir(r.DataDir)
	if err != nil {
		bad = append(bad, err.Error())
	}
	for _, e := range entries {
		if !e.Type().IsRegular() {
			continue
		}
		fi, err := e.Info()
		if err != nil {
			continue
		}
		if m := fi.Mode().Perm(); m&0o077 != 0 {
			bad = append(bad, fmt.Sprintf("%s has mode %04o: readable by group or others", filepath.Join(r.DataDir, e.Name()), m))
		}
		if u := owner(fi); u != r.UID {
			bad = append(bad, fmt.Sprintf("%s is owned by uid %d", filepath.Join(r.DataDir, e.Name()), u))
		}
	}
	if len(bad) > 0 {
		c.Result, c.Detail = Fail, list(bad)
		return c
	}
	c.Result, c.Detail = Pass, r.DataDir+" and its files are owner-only"
	return c
}

func (r *run) keyFile() Check {
	c := Check{ID: "masterkey.file.permissions", Title: "master key file is owner-only", Severity: High,
		Fix: fmt.Sprintf("chown $(id -u) %[1]s && chmod 600 %[1]s", r.KeyFile)}
	if r.MasterKeySource != "file" {
		c.Result, c.Detail = Skip, "master key source is "+reason(r.MasterKeySource, "unknown")+", not a key file"
		return c
	}
	if r.KeyFileProblem != "" {
		c.Result, c.Detail = Fail, r.KeyFileProblem
		c.Fix = "keep one key file: point master_key.file at the one this data dir was initialised with, or remove the other"
		return c
	}
	fi, err := os.Lstat(r.KeyFile)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		c.Result, c.Detail = Fail, "key file "+r.KeyFile+" is missing"
		c.Fix = "restore the key file from your backup, or set master_key.file"
		return c
	case err != nil:
		c.Result, c.Detail = Fail, err.Error()
		return c
	case !fi.Mode().IsRegular():
		c.Result, c.Detail = Fail, r.KeyFile+" is not a regular file"
		return c
	}
	var bad []string
	if m := fi.Mode().Perm(); m&0o177 != 0 {
		bad = append(bad, fmt.Sprintf("%s has mode %04o; want 0600 or 0400", r.KeyFile, m))
	}
	if u := owner(fi); u != r.UID {
		bad = append(bad, fmt.Sprintf("%s is owned by uid %d, not by you (uid %d)", r.KeyFile, u, r.UID))
	}
	if len(bad) > 0 {
		c.Result, c.Detail = Fail, list(bad)
		return c
	}
	c.Result, c.Detail = Pass, r.KeyFile+" is owner-only"
	return c
}

func (r *run) masterKeySource() Check {
	c := Check{ID: "masterkey.source", Title: "master key source is strong", Severity: Medium,
		Fix: "re-initialise with `keystile init --master-key passphrase` (or keyring) and move the credentials over"}
	switch r.MasterKeySource {
	case "passphrase":
		c.Result, c.Detail = Pass, "passphrase (Argon2id): the key exists only while keystile runs"
	case "keyring":
		c.Result, c.Detail = Pass, "OS keyring"
	case "file":
		c.Result, c.Detail = Warn, "key file: the weakest source, the key sits on the same disk as the data it protects (a copy of the data dir is a copy of every secret)"
	case "env":
		c.Result, c.Detail = Warn, "environment variable: readable by every process of the same user via /proc/<pid>/environ and easy to leak into logs"
	case "":
		c.Result, c.Detail = Skip, "the recorded source could not be read ("+reason(r.VaultReason, "no vault")+")"
	default:
		c.Result, c.Detail = Warn, "unknown source "+r.MasterKeySource
	}
	return c
}

func (r *run) adminSocket() Check {
	c := Check{ID: "admin.socket.permissions", Title: "admin socket is owner-only", Severity: High,
		Fix: "restart `keystile serve` (it creates the socket 0600), and keep its directory private"}
	fi, err := os.Lstat(r.Socket)
	switch {
	case r.Socket == "":
		c.Result, c.Detail = Skip, "no socket path"
		return c
	case errors.Is(err, fs.ErrNotExist):
		c.Result, c.Detail = Skip, "no admin socket at "+r.Socket+" (server not running)"
		return c
	case err != nil:
		c.Result, c.Detail = Fail, err.Error()
		return c
	case fi.Mode()&fs.ModeSocket == 0:
		c.Result, c.Detail = Fail, r.Socket+" is not a socket"
		return c
	}
	var bad []string
	if m := fi.Mode().Perm(); m&0o177 != 0 {
		bad = append(bad, fmt.Sprintf("%s has mode %04o; want 0600", r.Socket, m))
	}
	if u := owner(fi); u != r.UID {
		bad = append(bad, fmt.Sprintf("%s is owned by uid %d, not by you (uid %d)", r.Socket, u, r.UID))
	}
	if len(bad) > 0 {
		c.Result, c.Detail = Fail, list(bad)
		return c
	}
	c.Result, c.Detail = Pass, r.Socket+" is 0600 and yours"
	return c
}

func (r *run) runningAsRoot() Check {
	c := Check{ID: "process.root", Title: "keystile does not run as root", Severity: Medium,
		Fix: "run keystile as a dedicated unprivileged user (e.g. `useradd --system keystile`)"}
	var bad []string
	if r.UID == 0 {
		bad = append(bad, "doctor runs as root")
	}
	if r.status != nil {
		if b, err := r.ReadProc(r.status.PID, "status"); err == nil {
			if uid, ok := procField(b, "Uid:"); ok && uid == "0" {
				bad = append(bad, fmt.Sprintf("the server (pid %d) runs as root", r.status.PID))
			}
		}
	}
	if len(bad) > 0 {
		c.Result, c.Detail = Warn, list(bad)
		return c
	}
	c.Result, c.Detail = Pass, fmt.Sprintf("uid %d", r.UID)
	return c
}

// procField returns the first word after key in a /proc status file.
func procField(b []byte, key string) (string, bool) {
	for _, l := range strings.Split(string(b), "\n") {
		if rest, ok := strings.CutPrefix(l, key); ok {
			f := strings.Fields(rest)
			if len(f) > 0 {
				return f[0], true
			}
		}
	}
	return "", false
}

func (r *run) coreDumps() Check {
	c := Check{ID: "server.coredumps", Title: "core dumps are disabled for the server", Severity: High,
		Fix: "run the server with `keystile serve` (it sets RLIMIT_CORE to 0); under systemd also set LimitCORE=0"}
	if r.status == nil {
		c.Result, c.Detail = Skip, "server not running ("+reason(r.ServerReason, "no admin socket")+")"
		return c
	}
	pid := r.status.PID
	st, err := r.ReadProc(pid, "status")
	if err != nil {
		c.Result, c.Detail = Skip, fmt.Sprintf("cannot read /proc/%d/status: %v", pid, err)
		return c
	}
	name, _ := procField(st, "Name:")
	lim, err := r.ReadProc(pid, "limits")
	if err != nil {
		c.Result, c.Detail = Skip, fmt.Sprintf("cannot read /proc/%d/limits: %v", pid, err)
		return c
	}
	for _, l := range strings.Split(string(lim), "\n") {
		rest, ok := strings.CutPrefix(l, "Max core file size")
		if !ok {
			continue
		}
		f := strings.Fields(rest)
		if len(f) < 2 {
			break
		}
		if f[0] == "0" && f[1] == "0" {
			c.Result, c.Detail = Pass, fmt.Sprintf("pid %d (%s): core file size limit 0", pid, name)
		} else if f[0] == "0" {
			c.Result, c.Detail = Pass, fmt.Sprintf("pid %d (%s): core file size soft limit 0 (hard limit %s)", pid, name, f[1])
		} else {
			c.Result, c.Detail = Fail, fmt.Sprintf("pid %d (%s): core file size limit is %s: a crash could write secrets to disk", pid, name, f[0])
		}
		return c
	}
	c.Result, c.Detail = Skip, fmt.Sprintf("/proc/%d/limits has no core file size line", pid)
	return c
}
