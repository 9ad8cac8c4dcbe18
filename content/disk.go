package content

import (
	"sync"
	"time"
)

// The reply the SMTP server gives to MAIL (and at the final dot) while
// Accepting reports false: seed 001, qmgr min_disk_space.
const (
	RefuseCode     = 452
	RefuseEnhanced = "4.3.1"
	RefuseText     = "Insufficient system storage"
)

// diskState is the hysteresis of Accepting.
type diskState struct {
	mu        sync.Mutex
	accepting bool
	checked   time.Time // zero until the first look
	free      int64     // free bytes at the last look
}

// Accepting reports whether the server should accept new mail: false once
// the free space of the CDB file system drops below MinDiskSpace, true
// again once it is back above OkDiskSpace (qmgr min_disk_space and
// ok_disk_space). The file system is asked at most once per
// DiskCheckInterval. While it reports false, the server answers
// RefuseCode RefuseEnhanced RefuseText.
func (s *Store) Accepting() bool {
	d := &s.disk
	d.mu.Lock()
	defer d.mu.Unlock()
	now := s.now()
	if !d.checked.IsZero() && now.Sub(d.checked) < s.opts.DiskCheckInterval && now.After(d.checked) {
		return d.accepting
	}
	d.checked = now
	free, err := s.opts.FreeSpace(s.dir)
	if err != nil {
		s.log.Error("checking free disk space", "dir", s.dir, "err", err)
		return d.accepting
	}
	d.free = free
	switch {
	case d.accepting && free < s.opts.MinDiskSpace:
		d.accepting = false
		s.log.Warn("free disk space below min_disk_space: refusing new mail",
			"dir", s.dir, "free_kb", free/1024, "min_disk_space_kb", s.opts.MinDiskSpace/1024)
	case !d.accepting && free >= s.opts.OkDiskSpace:
		d.accepting = true
		s.log.Warn("free disk space back above ok_disk_space: accepting mail again",
			"dir", s.dir, "free_kb", free/1024, "ok_disk_space_kb", s.opts.OkDiskSpace/1024)
	}
	return d.accepting
}
