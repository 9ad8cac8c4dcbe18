package conf

import (
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"
)

// Size is an amount of bytes. In smx.conf it is written with the units B,
// KB, MB and GB (powers of 1024), alone or in a sequence such as "1MB
// 512KB"; a bare number is in the option's base unit (B unless the option
// says otherwise, e.g. KB for max_message_size).
type Size int64

// parseNumber parses a non-negative integer with C prefixes: 0x for hex,
// a leading 0 for octal.
func parseNumber(s string) (int64, error) {
	t, base, what := s, 10, "a number"
	switch {
	case len(t) > 2 && t[0] == '0' && (t[1] == 'x' || t[1] == 'X'):
		t, base, what = t[2:], 16, "a hex number"
	case len(t) > 1 && t[0] == '0':
		t, base, what = t[1:], 8, "an octal number (it starts with 0)"
	}
	if t == "" || t[0] == '+' || t[0] == '-' {
		return 0, fmt.Errorf("expected %s, found %q", what, s)
	}
	v, err := strconv.ParseInt(t, base, 64)
	if errors.Is(err, strconv.ErrRange) {
		return 0, fmt.Errorf("number %q is too large", s)
	}
	if err != nil {
		return 0, fmt.Errorf("expected %s, found %q", what, s)
	}
	return v, nil
}

// parseBool accepts the seed's 0, false, off and 1, true, on, in any case.
func parseBool(s string) (bool, error) {
	switch strings.ToLower(s) {
	case "1", "true", "on":
		return true, nil
	case "0", "false", "off":
		return false, nil
	}
	return false, fmt.Errorf("expected a boolean (1, true, on or 0, false, off), found %q", s)
}

// unitPart is one number of a unit sequence and its unit ("" if none).
type unitPart struct {
	num  int64
	unit string
}

// splitUnits splits "1h 5m12s" into (number, unit) pairs. A value that is
// a single number is read with C prefixes (0x, leading 0); the numbers of
// a sequence with units are decimal.
func splitUnits(s string) ([]unitPart, bool) {
	if n, err := parseNumber(s); err == nil {
		return []unitPart{{num: n}}, true
	}
	var parts []unitPart
	i := 0
	for i < len(s) {
		for i < len(s) && s[i] == ' ' {
			i++
		}
		if i == len(s) {
			break
		}
		j := i
		for j < len(s) && s[j] >= '0' && s[j] <= '9' {
			j++
		}
		if j == i {
			return nil, false
		}
		n, err := strconv.ParseInt(s[i:j], 10, 64)
		if err != nil {
			return nil, false
		}
		k := j
		for k < len(s) && s[k] == ' ' {
			k++
		}
		u := k
		for u < len(s) && (s[u] >= 'a' && s[u] <= 'z' || s[u] >= 'A' && s[u] <= 'Z' || s[u] == 0xC2 || s[u] == 0xB5) {
			u++
		}
		parts = append(parts, unitPart{num: n, unit: s[k:u]})
		i = u
	}
	return parts, len(parts) > 0
}

var timeUnits = map[string]time.Duration{
	"w": 7 * 24 * time.Hour, "d": 24 * time.Hour, "h": time.Hour, "m": time.Minute, "s": time.Second,
	"ms": time.Millisecond, "us": time.Microsecond, "µs": time.Microsecond,
}

// parseDuration parses a time value: numbers with the units w, d, h, m, s
// (and ms, us as smx extensions), alone or in a sequence ("1h 5m 12s",
// "5m3s"); a number without a unit is in base.
func parseDuration(s string, base time.Duration) (time.Duration, error) {
	parts, ok := splitUnits(s)
	if !ok {
		return 0, fmt.Errorf("expected a time such as 30s, 5m, 1h 30m or 5d, found %q", s)
	}
	var total time.Duration
	for _, p := range parts {
		n := p.num
		unit := base
		if p.unit != "" {
			u, ok := timeUnits[strings.ToLower(p.unit)]
			if !ok {
				return 0, fmt.Errorf("unknown time unit %q in %q (want w, d, h, m, s, ms or us)", p.unit, s)
			}
			unit = u
		}
		if n > int64(math.MaxInt64/unit) || total > math.MaxInt64-time.Duration(n)*unit {
			return 0, fmt.Errorf("time %q is too large", s)
		}
		total += time.Duration(n) * unit
	}
	return total, nil
}

var sizeUnits = map[string]int64{"b": 1, "kb": 1 << 10, "mb": 1 << 20, "gb": 1 << 30}

// parseSize parses a size: numbers with the units B, KB, MB, GB, alone or
// in a sequence; a number without a unit is in base bytes.
func parseSize(s string, base int64) (Size, error) {
	parts, ok := splitUnits(s)
	if !ok {
		return 0, fmt.Errorf("expected a size such as 512KB, 10MB or 1GB, found %q", s)
	}
	var total int64
	for _, p := range parts {
		n := p.num
		unit := base
		if p.unit != "" {
			u, ok := sizeUnits[strings.ToLower(p.unit)]
			if !ok {
				return 0, fmt.Errorf("unknown size unit %q in %q (want B, KB, MB or GB)", p.unit, s)
			}
			unit = u
		}
		if n > math.MaxInt64/unit || total > math.MaxInt64-n*unit {
			return 0, fmt.Errorf("size %q is too large", s)
		}
		total += n * unit
	}
	return Size(total), nil
}

// formatDuration writes d with the largest units that express it exactly,
// e.g. "5d", "1h 30m", "6m 3s", "1500us".
func formatDuration(d time.Duration) string {
	if d == 0 {
		return "0s"
	}
	if week := 7 * 24 * time.Hour; d%week == 0 {
		return strconv.FormatInt(int64(d/week), 10) + "w"
	}
	var parts []string
	for _, u := range []struct {
		name string
		d    time.Duration
	}{{"d", 24 * time.Hour}, {"h", time.Hour}, {"m", time.Minute}, {"s", time.Second}, {"ms", time.Millisecond}, {"us", time.Microsecond}} {
		if d >= u.d {
			parts = append(parts, strconv.FormatInt(int64(d/u.d), 10)+u.name)
			d %= u.d
		}
	}
	if d > 0 { // below a microsecond: cannot be written, round up
		parts = append(parts, "1us")
	}
	return strings.Join(parts, " ")
}

// formatSize writes n with the largest unit that expresses it exactly.
func formatSize(n Size) string {
	switch {
	case n == 0:
		return "0B"
	case n%(1<<30) == 0:
		return strconv.FormatInt(int64(n>>30), 10) + "GB"
	case n%(1<<20) == 0:
		return strconv.FormatInt(int64(n>>20), 10) + "MB"
	case n%(1<<10) == 0:
		return strconv.FormatInt(int64(n>>10), 10) + "KB"
	}
	return strconv.FormatInt(int64(n), 10) + "B"
}

func timeDur(n int) time.Duration { return time.Duration(n) }
