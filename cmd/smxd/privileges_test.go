package main

import (
	"fmt"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"

	"github.com/stretchr/testify/require"
)

// TestDropPrivileges runs dropPrivileges in a child process (it cannot be
// undone) and checks that the child ends up as the configured user, with
// the queue directory handed to it.
func TestDropPrivileges(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root")
	}
	nobody, err := user.Lookup("nobody")
	if err != nil {
		t.Skip("no user nobody")
	}
	dir := t.TempDir()
	queue := filepath.Join(dir, "queue")
	require.NoError(t, os.MkdirAll(queue, 0o750))
	require.NoError(t, os.WriteFile(filepath.Join(queue, "ids"), []byte("x"), 0o644))

	cmd := exec.Command(os.Args[0], "-test.run=^TestDropPrivilegesChild$")
	cmd.Env = append(os.Environ(), "SMXD_DROP_TEST_QUEUE="+queue)
	out, err := cmd.CombinedOutput()
	require.NoError(t, err, string(out))
	require.Contains(t, string(out), "uid="+nobody.Uid+" gid="+nobody.Gid+" ")

	for _, p := range []string{queue, filepath.Join(queue, "ids")} {
		st, err := os.Stat(p)
		require.NoError(t, err)
		require.Equal(t, nobody.Uid, strconv.Itoa(int(st.Sys().(*syscall.Stat_t).Uid)), p)
	}
}

func TestDropPrivilegesChild(t *testing.T) {
	queue := os.Getenv("SMXD_DROP_TEST_QUEUE")
	if queue == "" {
		t.Skip("run by TestDropPrivileges")
	}
	if err := dropPrivileges("nobody", "", queue); err != nil {
		t.Fatal(err)
	}
	groups, _ := os.Getgroups()
	fmt.Printf("uid=%d gid=%d groups=%s\n", os.Getuid(), os.Getgid(), strings.Trim(fmt.Sprint(groups), "[]"))
}

func TestDropPrivilegesUnknownUser(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root")
	}
	err := dropPrivileges("no-such-user-smx", "", t.TempDir())
	require.ErrorContains(t, err, "user option")
}
