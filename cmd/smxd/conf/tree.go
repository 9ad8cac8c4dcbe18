package conf

import (
	"fmt"
	"strings"
)

// Pos is a position in a configuration file. Line and Col count from 1;
// Col counts characters (runes), so tabs count as one.
type Pos struct {
	File string
	Line int
	Col  int
}

// String returns "file:line:col" (or "line:col" without a file name).
func (p Pos) String() string {
	if p.Line == 0 {
		return p.File
	}
	if p.File == "" {
		return fmt.Sprintf("%d:%d", p.Line, p.Col)
	}
	return fmt.Sprintf("%s:%d:%d", p.File, p.Line, p.Col)
}

// Entry is an *Option or a *Section.
type Entry interface {
	entryPos() Pos
}

// Section is `keyword [name] { entries } [;]`. The root of a file is a
// Section with an empty Keyword.
type Section struct {
	Pos     Pos // of the keyword
	Keyword string
	Name    string // "" when the section has none
	NamePos Pos
	Entries []Entry
	End     Pos // of the closing brace
}

// Option is `name = value;` or `name = { list };`.
type Option struct {
	Pos   Pos // of the name
	Name  string
	Value Value
}

// Value is the right-hand side of an option: one item, or a list.
type Value struct {
	Pos   Pos // of the first token
	List  bool
	Items []Item // exactly one unless List
}

// Item is one value: the text of one or more adjacent tokens. Adjacent
// quoted strings are concatenated as in C; other adjacent tokens are
// joined with one space (so that `1h 5m 12s` is one value).
type Item struct {
	Pos    Pos
	Text   string
	Quoted bool // every token of the item was a quoted string
}

func (s *Section) entryPos() Pos { return s.Pos }
func (o *Option) entryPos() Pos  { return o.Pos }

// Title names the section as written, e.g. "smtps MSA" or "qmgr".
func (s *Section) Title() string {
	if s.Name == "" {
		return s.Keyword
	}
	return s.Keyword + " " + s.Name
}

// Error is a configuration error at a position.
type Error struct {
	Pos Pos
	Msg string
}

// Error renders the error as FILE:LINE:COL: message.
func (e *Error) Error() string { return e.Pos.String() + ": " + e.Msg }

// Errors is a list of configuration errors, in file order.
type Errors []*Error

// Error renders each error on a line of its own.
func (es Errors) Error() string {
	var b strings.Builder
	for i, e := range es {
		if i > 0 {
			b.WriteByte('\n')
		}
		b.WriteString(e.Error())
	}
	return b.String()
}

// Warning is something accepted but worth the operator's attention, such
// as an option that only made sense for separate processes.
type Warning struct {
	Pos Pos
	Msg string
}

// String renders the warning as FILE:LINE:COL: warning: message.
func (w Warning) String() string { return w.Pos.String() + ": warning: " + w.Msg }
