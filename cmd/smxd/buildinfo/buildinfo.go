// Package buildinfo tells which build of smx is running, for smxd and
// smxctl's version commands and smxd's start-up line. It owns nothing else.
package buildinfo

import (
	"fmt"
	"runtime"
	"runtime/debug"
)

// version is set at link time by the Makefile:
// -ldflags "-X github.com/smx-mta/smx/cmd/smxd/buildinfo.version=v1.2.3".
// It is never written at run time.
var version string

// Version returns the release, or the module version and VCS revision the
// Go toolchain recorded, or "devel".
func Version() string {
	if version != "" {
		return version
	}
	info, ok := debug.ReadBuildInfo()
	if !ok {
		return "devel"
	}
	v := info.Main.Version
	if v == "" || v == "(devel)" {
		v = "devel"
	}
	for _, s := range info.Settings {
		if s.Key == "vcs.revision" && len(s.Value) >= 12 {
			v += "+" + s.Value[:12]
		}
	}
	return v
}

// String returns the line the version commands print.
func String(program string) string {
	return fmt.Sprintf("%s %s (%s, %s/%s)", program, Version(), runtime.Version(), runtime.GOOS, runtime.GOARCH)
}
