package main

import (
	"fmt"
	"os"
	"os/user"
	"strconv"
	"syscall"
)

// dropPrivileges switches to the configured user and group (the global
// user and group options) when smxd runs as root, after everything that
// needs root has been done, handing the queue directory to that user
// first. Without a user option, or when not root, it does nothing.
func dropPrivileges(userName, groupName, queueDir string) error {
	if userName == "" && groupName == "" {
		return nil
	}
	if os.Geteuid() != 0 {
		return nil // already unprivileged: the operator started smxd as the user
	}
	uid, gid := -1, -1
	if userName != "" {
		u, err := user.Lookup(userName)
		if err != nil {
			return fmt.Errorf("user option: %w", err)
		}
		uid, _ = strconv.Atoi(u.Uid)
		gid, _ = strconv.Atoi(u.Gid)
	}
	if groupName != "" {
		g, err := user.LookupGroup(groupName)
		if err != nil {
			return fmt.Errorf("group option: %w", err)
		}
		gid, _ = strconv.Atoi(g.Gid)
	}
	if err := chownTree(queueDir, uid, gid); err != nil {
		return fmt.Errorf("hand the queue directory to %s: %w", userName, err)
	}
	if gid >= 0 {
		if err := syscall.Setgroups([]int{gid}); err != nil {
			return fmt.Errorf("setgroups: %w", err)
		}
		if err := syscall.Setgid(gid); err != nil {
			return fmt.Errorf("setgid %d: %w", gid, err)
		}
	}
	if uid >= 0 {
		if err := syscall.Setuid(uid); err != nil {
			return fmt.Errorf("setuid %d: %w", uid, err)
		}
	}
	return nil
}

// chownTree gives dir and what it holds directly to uid:gid (the queue's
// own files; the stores below keep their owners once created by smxd).
func chownTree(dir string, uid, gid int) error {
	if err := os.Lchown(dir, uid, gid); err != nil {
		return err
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		return err
	}
	for _, e := range entries {
		if err := os.Lchown(dir+"/"+e.Name(), uid, gid); err != nil {
			return err
		}
	}
	return nil
}
