package main

import (
	"context"
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
	a, err := lookupAccount("nobody", "")
	if err != nil {
		t.Fatal(err)
	}
	if err := dropPrivileges(a, queue); err != nil {
		t.Fatal(err)
	}
	groups, _ := os.Getgroups()
	fmt.Printf("uid=%d gid=%d groups=%s\n", os.Getuid(), os.Getgid(), strings.Trim(fmt.Sprint(groups), "[]"))
}

func TestDropPrivilegesUnknownUser(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root")
	}
	_, err := lookupAccount("no-such-user-smx", "")
	require.ErrorContains(t, err, "user option")
	_, err = lookupAccount("root", "")
	require.ErrorContains(t, err, "root; name an unprivileged account")
}

func TestRunRefusesRoot(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root")
	}
	file, _, _ := testConfig(t)
	_, _, err := execute(t, context.Background(), "run", "-f", file)
	require.ErrorContains(t, err, "refusing to run as root: set the user option")
}

func TestCheckSafe(t *testing.T) {
	dir := t.TempDir()
	uid, gid := os.Geteuid(), os.Getegid()
	f := filepath.Join(dir, "access")
	require.NoError(t, os.WriteFile(f, []byte("x"), 0o644))
	require.NoError(t, checkSafeFile(f, "map access_map", uid, gid))
	require.NoError(t, checkSafe(filepath.Join(dir, "missing"), "queue directory", uid, gid), "smxd creates what is missing")

	require.NoError(t, os.Chmod(f, 0o646))
	require.EqualError(t, checkSafeFile(f, "map access_map", uid, gid),
		"map access_map "+f+" is writable by every user (mode 0646): run chmod o-w "+f)
	require.NoError(t, os.Chmod(f, 0o644))

	// A group-writable file is fine when the group is root's or smxd's.
	require.NoError(t, os.Chmod(f, 0o664))
	require.NoError(t, os.Chown(f, -1, gid))
	require.NoError(t, checkSafeFile(f, "map access_map", uid, gid))

	// The directory counts too: a file in a directory others can write
	// can be replaced.
	sub := filepath.Join(dir, "maps")
	require.NoError(t, os.Mkdir(sub, 0o755))
	require.NoError(t, os.Chmod(sub, 0o777))
	g := filepath.Join(sub, "mailertable")
	require.NoError(t, os.WriteFile(g, nil, 0o644))
	require.ErrorContains(t, checkSafeFile(g, "map mailertable", uid, gid), "directory of map mailertable "+sub+" is writable by every user")
	require.NoError(t, os.Chmod(sub, os.ModeSticky|0o777))
	require.NoError(t, checkSafeFile(g, "map mailertable", uid, gid), "a sticky directory such as /tmp protects files")

	if uid == 0 {
		nobody, err := user.Lookup("nobody")
		if err == nil {
			n, _ := strconv.Atoi(nobody.Uid)
			require.NoError(t, os.Chown(f, n, -1))
			require.ErrorContains(t, checkSafe(f, "map access_map", uid, gid), "is owned by nobody, who is neither root nor smxd's user")
		}
	}
}
