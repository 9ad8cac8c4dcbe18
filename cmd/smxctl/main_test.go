package main

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"
)

func execute(args ...string) (string, string, error) {
	cmd := newRootCmd()
	var out, errOut bytes.Buffer
	cmd.SetOut(&out)
	cmd.SetErr(&errOut)
	cmd.SetArgs(args)
	err := cmd.Execute()
	return out.String(), errOut.String(), err
}

func TestVersion(t *testing.T) {
	out, _, err := execute("version")
	require.NoError(t, err)
	require.Regexp(t, `^smxctl \S+ \(go1\.\d+`, out)
}

func TestConfigCheck(t *testing.T) {
	out, _, err := execute("config", "check")
	require.NoError(t, err)
	require.Equal(t, "default.conf (embedded): ok\n", out)

	out, stderr, err := execute("-f", "../smxd/conf/testdata/seed001-example.conf", "config", "check")
	require.NoError(t, err)
	require.Equal(t, "../smxd/conf/testdata/seed001-example.conf: ok\n", out)
	require.Contains(t, stderr, "warning: option path ignored")

	bad := filepath.Join(t.TempDir(), "bad.conf")
	require.NoError(t, os.WriteFile(bad, []byte("smtps { flags = { 8bitmine }; }\n"), 0o644))
	_, _, err = execute("config", "check", bad)
	require.EqualError(t, err, bad+`:1:19: unknown flag "8bitmine" in flags; did you mean "8bitmime"?`)
}

func TestLoadConfigUsesFlag(t *testing.T) {
	cmd := newRootCmd()
	flags := &globalFlags{configFile: "../smxd/smx.conf"}
	c, err := loadConfig(cmd, flags)
	require.NoError(t, err)
	require.Equal(t, "/var/spool/smx", c.QueueDirectory)
	c, err = loadConfig(cmd, &globalFlags{})
	require.NoError(t, err)
	wd, _ := os.Getwd()
	require.Equal(t, filepath.Join(wd, "var", "smx"), c.QueueDirectory)
}
