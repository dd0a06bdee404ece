package buildinfo

import (
	"runtime"
	"runtime/debug"
)

// Info is what a binary knows about its own build. Empty fields were not
// recorded (a test binary, or a build without VCS stamping).
type Info struct {
	// Version is keystile's version: see Read.
	Version string `json:"version"`
	// Module is the main module's path.
	Module string `json:"module,omitempty"`
	// ModuleVersion is the main module's version as the go command
	// recorded it: a tag (v1.2.3), a pseudo-version, or "(devel)".
	ModuleVersion string `json:"module_version,omitempty"`
	// Revision, Time and Modified are the VCS revision, commit time
	// (RFC 3339) and whether the tree had uncommitted changes.
	Revision string `json:"vcs_revision,omitempty"`
	Time     string `json:"vcs_time,omitempty"`
	Modified *bool  `json:"vcs_modified,omitempty"`
	// GoVersion is the toolchain that built the binary.
	GoVersion string `json:"go_version"`
	OS        string `json:"goos"`
	Arch      string `json:"goarch"`
}

// Read describes the running binary. version is the version keystile was
// stamped with (-ldflags -X); def is its default value. A stamped version
// wins; otherwise a real module version (go install ...@v1.2.3, or the
// pseudo-version the go command derives from VCS) wins over def.
func Read(version, def string) Info {
	bi, _ := debug.ReadBuildInfo()
	return From(bi, version, def)
}

// From is Read over given build information (nil when none is embedded).
func From(bi *debug.BuildInfo, version, def string) Info {
	i := Info{Version: version, GoVersion: runtime.Version(), OS: runtime.GOOS, Arch: runtime.GOARCH}
	if bi == nil {
		return i
	}
	if bi.GoVersion != "" {
		i.GoVersion = bi.GoVersion
	}
	i.Module, i.ModuleVersion = bi.Main.Path, bi.Main.Version
	for _, s := range bi.Settings {
		switch s.Key {
		case "vcs.revision":
			i.Revision = s.Value
		case "vcs.time":
			i.Time = s.Value
		case "vcs.modified":
			m := s.Value == "true"
			i.Modified = &m
		case "GOOS":
			i.OS = s.Value
		case "GOARCH":
			i.Arch = s.Value
		}
	}
	if version == def && i.ModuleVersion != "" && i.ModuleVersion != "(devel)" {
		i.Version = i.ModuleVersion
	}
	return i
}

// Short is the one-line form: "keystile 1.2.3 (rev abcdef012345, dirty,
// 2026-12-03T10:00:00Z; go1.26.8 linux/amd64)".
func (i Info) Short() string {
	s := "keystile " + i.Version + " ("
	if i.Revision != "" {
		rev := i.Revision
		if len(rev) > 12 {
			rev = rev[:12]
		}
		s += "rev " + rev
		if i.Modified != nil && *i.Modified {
			s += ", dirty"
		}
		if i.Time != "" {
			s += ", " + i.Time
		}
		s += "; "
	}
	return s + i.GoVersion + " " + i.OS + "/" + i.Arch + ")"
}
