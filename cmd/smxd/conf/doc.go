// Package conf reads smx.conf, the configuration language of the seeds
// (sendmail X / MeTA1 "Configuration File Syntax"), into typed sections
// that mirror the seed's modules: the global options, log, qmgr, smar
// (with its map declarations), the named smtps servers, and smtpc.
//
// It works in layers, each usable on its own:
//
//   - Parse turns text into a tree of sections and options with the file,
//     line and column of everything (tree.go, parse.go);
//   - Decode fills a Config, whose defaults come from one file per section
//     (global.go, qmgr.go, smar.go, smtps.go, smtpc.go), converting values
//     with their units and reporting unknown options with a suggestion;
//   - Config.Resolve fills in what depends on the machine (hostname, the
//     working directory) and makes every path absolute: maps and TLS files
//     relative to the configuration file's directory, the queue, event log,
//     CDB and sockets relative to the queue directory;
//   - Config.Validate checks what involves several options;
//   - Dump prints a Config back in smx.conf syntax, every option with its
//     value, so that parsing the dump gives the same Config.
//
// Load does all of it. Default returns the configuration embedded in the
// binary (default.conf), used when smxd runs without -f.
//
// The package only reads files it is asked to read. Components never import
// it: cmd/smxd maps a Config onto each component's own Options.
package conf
