package maillog

import (
	"context"
	"fmt"
	"log/slog"
	"strconv"
	"time"
)

// Handler returns a slog.Handler that writes records as mail log lines
// through l: a non-empty message becomes a msg= field, then every
// attribute becomes a field in order (groups are written as group.name),
// strings escaped, durations in seconds, booleans as 1 or 0. slog levels
// map to Error, Warning, Info and Debug. It is for the few mail log lines
// that are easier to write with slog's API; the Line methods are faster.
func (l *Logger) Handler() slog.Handler { return &handler{logger: l} }

type handler struct {
	logger *Logger
	prefix []byte // fields rendered by WithAttrs
	group  string // group prefix for attributes, ending in "."
}

func fromSlogLevel(level slog.Level) Level {
	switch {
	case level >= slog.LevelError:
		return LevelError
	case level >= slog.LevelWarn:
		return LevelWarning
	case level >= slog.LevelInfo:
		return LevelInfo
	}
	return LevelDebug
}

func (h *handler) Enabled(_ context.Context, level slog.Level) bool {
	return h.logger.Enabled(fromSlogLevel(level))
}

func (h *handler) Handle(_ context.Context, r slog.Record) error {
	ln := h.logger.Line(fromSlogLevel(r.Level))
	if ln == nil {
		return nil
	}
	if r.Message != "" {
		ln.Str("msg", r.Message)
	}
	if len(h.prefix) > 0 {
		if len(ln.buf) > 0 {
			ln.buf = append(ln.buf, ", "...)
		}
		ln.buf = append(ln.buf, h.prefix...)
	}
	r.Attrs(func(a slog.Attr) bool {
		ln.buf = appendAttr(ln.buf, h.group, a)
		return true
	})
	ln.Write()
	return nil
}

func (h *handler) WithAttrs(attrs []slog.Attr) slog.Handler {
	h2 := *h
	h2.prefix = append([]byte(nil), h.prefix...)
	for _, a := range attrs {
		h2.prefix = appendAttr(h2.prefix, h.group, a)
	}
	return &h2
}

func (h *handler) WithGroup(name string) slog.Handler {
	if name == "" {
		return h
	}
	h2 := *h
	h2.group = h.group + name + "."
	return &h2
}

func appendAttr(dst []byte, group string, a slog.Attr) []byte {
	a.Value = a.Value.Resolve()
	if a.Equal(slog.Attr{}) {
		return dst
	}
	if a.Value.Kind() == slog.KindGroup {
		sub := group
		if a.Key != "" {
			sub = group + a.Key + "."
		}
		for _, ga := range a.Value.Group() {
			dst = appendAttr(dst, sub, ga)
		}
		return dst
	}
	if len(dst) > 0 {
		dst = append(dst, ", "...)
	}
	dst = append(dst, group...)
	dst = append(dst, a.Key...)
	dst = append(dst, '=')
	v := a.Value
	switch v.Kind() {
	case slog.KindString:
		dst = AppendEscaped(dst, v.String())
	case slog.KindInt64:
		dst = strconv.AppendInt(dst, v.Int64(), 10)
	case slog.KindUint64:
		dst = strconv.AppendUint(dst, v.Uint64(), 10)
	case slog.KindBool:
		if v.Bool() {
			dst = append(dst, '1')
		} else {
			dst = append(dst, '0')
		}
	case slog.KindDuration:
		dst = strconv.AppendInt(dst, int64(v.Duration()/time.Second), 10)
	case slog.KindTime:
		dst = v.Time().AppendFormat(dst, time.RFC3339)
	case slog.KindFloat64:
		dst = strconv.AppendFloat(dst, v.Float64(), 'g', -1, 64)
	default:
		dst = AppendEscaped(dst, fmt.Sprint(v.Any()))
	}
	return dst
}
