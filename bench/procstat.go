package main

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// clockTick is the kernel's USER_HZ, the unit of utime and stime in
// /proc/<pid>/stat. It is 100 on every Linux architecture Go supports.
const clockTick = 10 * time.Millisecond

// procCPU returns the user+system CPU time used so far by pid, read from
// /proc/<pid>/stat (fields 14 and 15).
func procCPU(pid int) (time.Duration, error) {
	b, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "stat"))
	if err != nil {
		return 0, err
	}
	return parseStatCPU(b)
}

// parseStatCPU reads utime and stime from the contents of /proc/<pid>/stat.
// The command name (field 2) may hold spaces and parentheses, so fields are
// counted after the last ')'.
func parseStatCPU(b []byte) (time.Duration, error) {
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return 0, fmt.Errorf("procstat: malformed stat")
	}
	f := strings.Fields(string(b[i+1:]))
	// f[0] is field 3 (state); utime is field 14, stime field 15.
	if len(f) < 13 {
		return 0, fmt.Errorf("procstat: short stat")
	}
	u, err1 := strconv.ParseInt(f[11], 10, 64)
	s, err2 := strconv.ParseInt(f[12], 10, 64)
	if err1 != nil || err2 != nil || u < 0 || s < 0 {
		return 0, fmt.Errorf("procstat: bad utime/stime")
	}
	return time.Duration(u+s) * clockTick, nil
}

// parseStatPPID reads the parent pid (field 4) from /proc/<pid>/stat.
func parseStatPPID(b []byte) (int, error) {
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return 0, fmt.Errorf("procstat: malformed stat")
	}
	f := strings.Fields(string(b[i+1:]))
	if len(f) < 2 {
		return 0, fmt.Errorf("procstat: short stat")
	}
	return strconv.Atoi(f[1])
}

// children returns the pids whose parent is pid (one level).
func children(pid int) []int {
	ents, err := os.ReadDir("/proc")
	if err != nil {
		return nil
	}
	var out []int
	for _, e := range ents {
		p, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		b, err := os.ReadFile(filepath.Join("/proc", e.Name(), "stat"))
		if err != nil {
			continue
		}
		if pp, err := parseStatPPID(b); err == nil && pp == pid {
			out = append(out, p)
		}
	}
	return out
}

// memStat is a process's resident memory from /proc/<pid>/status.
type memStat struct {
	RSS, HWM int64 // bytes: VmRSS now and its peak (VmHWM)
}

func procMem(pid int) (memStat, error) {
	b, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "status"))
	if err != nil {
		return memStat{}, err
	}
	return parseStatus(b)
}

// parseStatus reads VmRSS and VmHWM (in kB) from /proc/<pid>/status.
func parseStatus(b []byte) (memStat, error) {
	var m memStat
	var seen int
	for _, line := range strings.Split(string(b), "\n") {
		k, v, ok := strings.Cut(line, ":")
		if !ok || (k != "VmRSS" && k != "VmHWM") {
			continue
		}
		f := strings.Fields(v)
		if len(f) != 2 || f[1] != "kB" {
			return m, fmt.Errorf("procstat: bad %s line", k)
		}
		n, err := strconv.ParseInt(f[0], 10, 64)
		if err != nil || n < 0 {
			return m, fmt.Errorf("procstat: bad %s value", k)
		}
		if k == "VmRSS" {
			m.RSS = n << 10
		} else {
			m.HWM = n << 10
		}
		seen++
	}
	if seen != 2 {
		return m, fmt.Errorf("procstat: VmRSS/VmHWM missing")
	}
	return m, nil
}

// procGroup is the set of processes that make up one system under test:
// a root pid and (for nginx) its worker children.
type procGroup struct {
	root         int
	more         []int // further roots (the second keystile replica)
	withChildren bool
}

func (g procGroup) pids() []int {
	if g.root <= 0 {
		return nil
	}
	p := append([]int{g.root}, g.more...)
	if g.withChildren {
		for _, r := range append([]int{g.root}, g.more...) {
			p = append(p, children(r)...)
		}
	}
	return p
}

// cpu sums the CPU time of the group's processes.
func (g procGroup) cpu() time.Duration {
	var t time.Duration
	for _, p := range g.pids() {
		if c, err := procCPU(p); err == nil {
			t += c
		}
	}
	return t
}

// mem sums resident memory over the group's processes.
func (g procGroup) mem() memStat {
	var m memStat
	for _, p := range g.pids() {
		if s, err := procMem(p); err == nil {
			m.RSS += s.RSS
			m.HWM += s.HWM
		}
	}
	return m
}
