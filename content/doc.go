// Package content is the content database (CDB) of smx: it stores message
// bodies durably, streams them back by reference with their integrity
// checked, reclaims their space when they are released, and keeps beside
// each body the envelope as received, so that the store alone is enough to
// rebuild the queue if the event log is lost.
//
// Bodies are appended to segment files. Concurrent writers share fdatasync
// calls (group commit), so durability costs far less than one sync per
// message under load. A body is identified by a reference (a short string
// the event log keeps in TxnReceived.Content) that stays valid until the
// body is released, even when compaction moves the body to another segment.
//
// The package owns the files in the CDB directory and nothing else. It never
// reads the event log or the configuration file and never decides when a
// body is no longer needed: the projections decide that, and the daemon
// calls Release when a ContentReleased event is durable. Tools that read
// while the daemon runs use OpenReadOnly, which takes no lock and writes
// nothing. docs/content.md describes the on-disk format byte by byte.
package content
