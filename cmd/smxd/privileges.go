package main

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/user"
	"path/filepath"
	"strconv"
	"syscall"
)

// account is the user and group smxd runs as once it has bound its
// sockets (the global user and group options).
type account struct {
	// UID and GID are -1 when smxd keeps its own.
	UID, GID int
	Name     string
}

// lookupAccount resolves the user and group options. The group defaults
// to the user's primary group.
func lookupAccount(userName, groupName string) (account, error) {
	a := account{UID: -1, GID: -1, Name: userName}
	if userName != "" {
		u, err := user.Lookup(userName)
		if err != nil {
			return a, fmt.Errorf("user option: %w", err)
		}
		a.UID, _ = strconv.Atoi(u.Uid)
		a.GID, _ = strconv.Atoi(u.Gid)
		if a.UID == 0 {
			return a, fmt.Errorf("user option: %s is root; name an unprivileged account", userName)
		}
	}
	if groupName != "" {
		g, err := user.LookupGroup(groupName)
		if err != nil {
			return a, fmt.Errorf("group option: %w", err)
		}
		a.GID, _ = strconv.Atoi(g.Gid)
	}
	return a, nil
}

// effective returns the uid and gid smxd will run as after start-up.
func (a account) effective() (uid, gid int) {
	uid, gid = os.Geteuid(), os.Getegid()
	if os.Geteuid() == 0 {
		if a.UID >= 0 {
			uid = a.UID
		}
		if a.GID >= 0 {
			gid = a.GID
		}
	}
	return uid, gid
}

// checkRoot refuses to run as root after start-up unless allowed: started
// as root, smxd needs a user option to switch to (seed 001, "Do not run
// programs as root").
func checkRoot(a account, allowRoot bool) error {
	if os.Geteuid() != 0 || a.UID >= 0 || allowRoot {
		return nil
	}
	return errors.New("refusing to run as root: set the user option (and group) in smx.conf to the account smxd " +
		"should run as after binding its ports, or start smxd with --allow-root")
}

// dropPrivileges switches to the account when smxd runs as root, after
// everything that needs root has been done, handing the queue directory
// and what it directly holds to that account first. When not root, or
// without a user or group option, it does nothing.
func dropPrivileges(a account, queueDir string) error {
	if os.Geteuid() != 0 || (a.UID < 0 && a.GID < 0) {
		return nil
	}
	if err := chownTree(queueDir, a.UID, a.GID); err != nil {
		return fmt.Errorf("hand the queue directory to %s: %w", a.Name, err)
	}
	if a.GID >= 0 {
		if err := syscall.Setgroups([]int{a.GID}); err != nil {
			return fmt.Errorf("setgroups: %w", err)
		}
		if err := syscall.Setgid(a.GID); err != nil {
			return fmt.Errorf("setgid %d: %w", a.GID, err)
		}
	}
	if a.UID >= 0 {
		if err := syscall.Setuid(a.UID); err != nil {
			return fmt.Errorf("setuid %d: %w", a.UID, err)
		}
	}
	return nil
}

// chownTree gives dir and what it holds to uid:gid. The stores below the
// queue directory (event log, CDB) are walked too: a queue directory
// created by an earlier run as root must become the account's.
func chownTree(dir string, uid, gid int) error {
	return filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		return os.Lchown(path, uid, gid)
	})
}

// checkSafe refuses a path that someone other than root and smxd's own
// account could write: a file or directory owned by another user, or
// writable by a group other than root's and smxd's, or by everyone. A
// directory writable by everyone is accepted only with the sticky bit
// (as /tmp is) when it is a parent of what smxd uses, never for smxd's
// own data. The error names the path and why.
func checkSafe(path, what string, uid, gid int) error {
	fi, err := os.Stat(path)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil // smxd creates it with safe permissions
		}
		return fmt.Errorf("%s %s: %w", what, path, err)
	}
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return nil
	}
	mode := fi.Mode().Perm()
	owner := int(st.Uid)
	group := int(st.Gid)
	switch {
	case owner != 0 && owner != uid:
		return fmt.Errorf("%s %s is owned by %s, who is neither root nor smxd's user %s: others must not be able to change it (chown it)",
			what, path, userName(owner), userName(uid))
	case mode&0o002 != 0:
		return fmt.Errorf("%s %s is writable by every user (mode %04o): run chmod o-w %s", what, path, mode, path)
	case mode&0o020 != 0 && group != 0 && group != gid:
		return fmt.Errorf("%s %s is writable by group %s, which is neither root's nor smxd's group (mode %04o): run chmod g-w %s",
			what, path, groupName(group), mode, path)
	}
	return nil
}

// checkSafeFile checks a file and the directory it is in.
func checkSafeFile(path, what string, uid, gid int) error {
	if err := checkSafe(path, what, uid, gid); err != nil {
		return err
	}
	dir := filepath.Dir(path)
	fi, err := os.Stat(dir)
	if err == nil && fi.Mode()&os.ModeSticky != 0 && fi.Mode().Perm()&0o002 != 0 {
		// A sticky world-writable directory such as /tmp: others cannot
		// replace a file they do not own.
		return nil
	}
	return checkSafe(dir, "directory of "+what, uid, gid)
}

func userName(uid int) string {
	if u, err := user.LookupId(strconv.Itoa(uid)); err == nil {
		return u.Username
	}
	return "uid " + strconv.Itoa(uid)
}

func groupName(gid int) string {
	if g, err := user.LookupGroupId(strconv.Itoa(gid)); err == nil {
		return g.Name
	}
	return "gid " + strconv.Itoa(gid)
}
