package conf

import (
	"fmt"
	"strings"
	"unicode/utf8"
)

// The grammar (seed 001 "Configuration File Syntax", seed 002 §3.2, seed
// 004's syntax section):
//
//	conf    ::= entry*
//	entry   ::= option | section
//	section ::= keyword [name] "{" entry* "}" [";"]
//	option  ::= name "=" rhs
//	rhs     ::= value ";" | "{" [value ("," value)* [","]] "}" [";"]
//	value   ::= token+            adjacent tokens form one value
//	token   ::= word | string
//
// A word is a run of characters other than white space and { } ; = , " #;
// a backslash in a word takes the next character literally (so `\#` is a
// '#'). A string is double-quoted with C escapes and may not span lines;
// adjacent strings are concatenated. `#` starts a comment to the end of the
// line. Keywords and option names are not case sensitive.

type tokenKind int

const (
	tokEOF tokenKind = iota
	tokWord
	tokString
	tokLBrace
	tokRBrace
	tokSemi
	tokEqual
	tokComma
)

func (k tokenKind) String() string {
	switch k {
	case tokEOF:
		return "end of file"
	case tokWord:
		return "word"
	case tokString:
		return "string"
	case tokLBrace:
		return `"{"`
	case tokRBrace:
		return `"}"`
	case tokSemi:
		return `";"`
	case tokEqual:
		return `"="`
	case tokComma:
		return `","`
	}
	return "token"
}

type token struct {
	kind tokenKind
	pos  Pos
	text string
	// spaceBefore is set when white space or a comment separates the
	// token from the previous one.
	spaceBefore bool
}

func (t token) describe() string {
	switch t.kind {
	case tokWord:
		return fmt.Sprintf("%q", t.text)
	case tokString:
		return fmt.Sprintf("string %q", t.text)
	}
	return t.kind.String()
}

type lexer struct {
	src  string
	file string
	off  int
	line int
	col  int
}

func (lx *lexer) pos() Pos { return Pos{File: lx.file, Line: lx.line, Col: lx.col} }

// advance moves past one rune.
func (lx *lexer) advance() rune {
	r, size := utf8.DecodeRuneInString(lx.src[lx.off:])
	lx.off += size
	if r == '\n' {
		lx.line++
		lx.col = 1
	} else {
		lx.col++
	}
	return r
}

func (lx *lexer) peek() rune {
	if lx.off >= len(lx.src) {
		return -1
	}
	r, _ := utf8.DecodeRuneInString(lx.src[lx.off:])
	return r
}

func isSpace(r rune) bool {
	return r == ' ' || r == '\t' || r == '\n' || r == '\r' || r == '\f' || r == '\v'
}

func isSpecial(r rune) bool {
	switch r {
	case '{', '}', ';', '=', ',', '"', '#':
		return true
	}
	return false
}

func punctuation(r rune) (tokenKind, bool) {
	switch r {
	case '{':
		return tokLBrace, true
	case '}':
		return tokRBrace, true
	case ';':
		return tokSemi, true
	case '=':
		return tokEqual, true
	case ',':
		return tokComma, true
	}
	return 0, false
}

func (lx *lexer) next() (token, error) {
	space := false
	for {
		r := lx.peek()
		switch {
		case r == -1:
			return token{kind: tokEOF, pos: lx.pos(), spaceBefore: true}, nil
		case isSpace(r):
			lx.advance()
			space = true
			continue
		case r == '#':
			for r := lx.peek(); r != -1 && r != '\n'; r = lx.peek() {
				lx.advance()
			}
			space = true
			continue
		}
		break
	}
	start := lx.pos()
	r := lx.peek()
	if r == utf8.RuneError {
		if _, size := utf8.DecodeRuneInString(lx.src[lx.off:]); size == 1 {
			return token{}, &Error{start, "invalid UTF-8"}
		}
	}
	if k, ok := punctuation(r); ok {
		lx.advance()
		return token{kind: k, pos: start, text: string(r), spaceBefore: space}, nil
	}
	if r == '"' {
		text, err := lx.quoted()
		if err != nil {
			return token{}, err
		}
		return token{kind: tokString, pos: start, text: text, spaceBefore: space}, nil
	}
	var b strings.Builder
	for {
		r := lx.peek()
		if r == -1 || isSpace(r) || isSpecial(r) {
			break
		}
		if r == utf8.RuneError {
			if _, size := utf8.DecodeRuneInString(lx.src[lx.off:]); size == 1 {
				return token{}, &Error{lx.pos(), "invalid UTF-8"}
			}
		}
		lx.advance()
		if r == '\\' {
			esc := lx.peek()
			if esc == -1 || esc == '\n' || esc == '\r' {
				return token{}, &Error{lx.pos(), `"\" at the end of a line: a backslash escapes the next character`}
			}
			lx.advance()
			b.WriteRune(esc)
			continue
		}
		b.WriteRune(r)
	}
	return token{kind: tokWord, pos: start, text: b.String(), spaceBefore: space}, nil
}

// quoted reads a double-quoted string with C escapes.
func (lx *lexer) quoted() (string, error) {
	open := lx.pos()
	lx.advance()
	var b strings.Builder
	for {
		r := lx.peek()
		switch r {
		case -1, '\n':
			return "", &Error{open, "unterminated string: a quoted string must end on the line it starts (write adjacent strings to continue it)"}
		case '"':
			lx.advance()
			return b.String(), nil
		case '\\':
			at := lx.pos()
			lx.advance()
			if err := lx.escape(&b, at); err != nil {
				return "", err
			}
			continue
		}
		if r == utf8.RuneError {
			if _, size := utf8.DecodeRuneInString(lx.src[lx.off:]); size == 1 {
				return "", &Error{lx.pos(), "invalid UTF-8"}
			}
		}
		lx.advance()
		b.WriteRune(r)
	}
}

func isOctal(r rune) bool { return '0' <= r && r <= '7' }

func hexVal(r rune) (int, bool) {
	switch {
	case '0' <= r && r <= '9':
		return int(r - '0'), true
	case 'a' <= r && r <= 'f':
		return int(r-'a') + 10, true
	case 'A' <= r && r <= 'F':
		return int(r-'A') + 10, true
	}
	return 0, false
}

func (lx *lexer) escape(b *strings.Builder, at Pos) error {
	r := lx.peek()
	simple := map[rune]byte{'n': '\n', 't': '\t', 'r': '\r', 'a': '\a', 'b': '\b', 'f': '\f', 'v': '\v',
		'\\': '\\', '"': '"', '\'': '\'', '?': '?', '#': '#'}
	if c, ok := simple[r]; ok {
		lx.advance()
		b.WriteByte(c)
		return nil
	}
	switch {
	case isOctal(r):
		v := 0
		for i := 0; i < 3 && isOctal(lx.peek()); i++ {
			v = v*8 + int(lx.advance()-'0')
		}
		if v > 0xFF {
			return &Error{at, fmt.Sprintf("octal escape \\%o is larger than a byte", v)}
		}
		b.WriteByte(byte(v))
		return nil
	case r == 'x':
		lx.advance()
		v, n := 0, 0
		for ; n < 2; n++ {
			d, ok := hexVal(lx.peek())
			if !ok {
				break
			}
			lx.advance()
			v = v*16 + d
		}
		if n == 0 {
			return &Error{at, `"\x" must be followed by hex digits`}
		}
		b.WriteByte(byte(v))
		return nil
	case r == -1 || r == '\n':
		return &Error{at, "unterminated string"}
	}
	return &Error{at, fmt.Sprintf("unknown escape \\%c in string (known: \\n \\t \\r \\a \\b \\f \\v \\\\ \\\" \\' \\? \\ooo \\xHH)", r)}
}

type parser struct {
	lx   lexer
	tok  token // current token
	peek *token
}

// maxDepth bounds section nesting so that hostile input cannot exhaust
// the stack.
const maxDepth = 32

// Parse parses the configuration text src; name is used in positions.
func Parse(name string, src []byte) (*Section, error) {
	p := &parser{lx: lexer{src: string(src), file: name, line: 1, col: 1}}
	if err := p.advance(); err != nil {
		return nil, err
	}
	root := &Section{Pos: Pos{File: name, Line: 1, Col: 1}}
	if err := p.entries(root, 0); err != nil {
		return nil, err
	}
	return root, nil
}

func (p *parser) advance() error {
	if p.peek != nil {
		p.tok = *p.peek
		p.peek = nil
		return nil
	}
	t, err := p.lx.next()
	if err != nil {
		return err
	}
	p.tok = t
	return nil
}

func (p *parser) errorf(pos Pos, format string, args ...any) error {
	return &Error{pos, fmt.Sprintf(format, args...)}
}

func (p *parser) entries(s *Section, depth int) error {
	for {
		switch p.tok.kind {
		case tokEOF:
			if s.Keyword != "" {
				return p.errorf(p.tok.pos, `expected "}" to close section %s opened at line %d`, s.Title(), s.Pos.Line)
			}
			return nil
		case tokRBrace:
			if s.Keyword == "" {
				return p.errorf(p.tok.pos, `unexpected "}": no section is open`)
			}
			s.End = p.tok.pos
			return p.advance()
		case tokWord, tokString:
			e, err := p.entry(depth)
			if err != nil {
				return err
			}
			s.Entries = append(s.Entries, e)
		default:
			return p.errorf(p.tok.pos, "expected an option name or a section keyword, found %s", p.tok.describe())
		}
	}
}

func (p *parser) entry(depth int) (Entry, error) {
	first := p.tok
	if err := p.advance(); err != nil {
		return nil, err
	}
	switch p.tok.kind {
	case tokEqual:
		if err := p.advance(); err != nil {
			return nil, err
		}
		v, err := p.rhs(first)
		if err != nil {
			return nil, err
		}
		return &Option{Pos: first.pos, Name: first.text, Value: v}, nil
	case tokLBrace:
		return p.section(first, token{}, depth)
	case tokWord, tokString:
		name := p.tok
		if err := p.advance(); err != nil {
			return nil, err
		}
		if p.tok.kind != tokLBrace {
			return nil, p.errorf(p.tok.pos, `expected "{" to open section %s %s, found %s (an option needs "=" after its name)`,
				first.text, name.text, p.tok.describe())
		}
		return p.section(first, name, depth)
	}
	return nil, p.errorf(p.tok.pos, `expected "=" or "{" after %q, found %s`, first.text, p.tok.describe())
}

func (p *parser) section(keyword, name token, depth int) (Entry, error) {
	if depth >= maxDepth {
		return nil, p.errorf(keyword.pos, "sections nested deeper than %d", maxDepth)
	}
	s := &Section{Pos: keyword.pos, Keyword: keyword.text, Name: name.text, NamePos: name.pos}
	if err := p.advance(); err != nil { // the "{"
		return nil, err
	}
	if err := p.entries(s, depth+1); err != nil {
		return nil, err
	}
	if p.tok.kind == tokSemi {
		if err := p.advance(); err != nil {
			return nil, err
		}
	}
	return s, nil
}

// rhs parses what follows "=".
func (p *parser) rhs(name token) (Value, error) {
	if p.tok.kind == tokLBrace {
		v := Value{Pos: p.tok.pos, List: true}
		if err := p.advance(); err != nil {
			return v, err
		}
		for p.tok.kind != tokRBrace {
			if p.tok.kind != tokWord && p.tok.kind != tokString {
				return v, p.errorf(p.tok.pos, `expected a value or "}" in the list of %s, found %s`, name.text, p.tok.describe())
			}
			it, err := p.item()
			if err != nil {
				return v, err
			}
			v.Items = append(v.Items, it)
			switch p.tok.kind {
			case tokComma:
				if err := p.advance(); err != nil {
					return v, err
				}
			case tokRBrace:
			default:
				return v, p.errorf(p.tok.pos, `expected "," or "}" in the list of %s, found %s`, name.text, p.tok.describe())
			}
		}
		if err := p.advance(); err != nil {
			return v, err
		}
		if p.tok.kind == tokSemi {
			if err := p.advance(); err != nil {
				return v, err
			}
		}
		return v, nil
	}
	if p.tok.kind != tokWord && p.tok.kind != tokString {
		return Value{}, p.errorf(p.tok.pos, "expected a value for %s, found %s", name.text, p.tok.describe())
	}
	it, err := p.item()
	if err != nil {
		return Value{}, err
	}
	if p.tok.kind != tokSemi {
		return Value{}, p.errorf(p.tok.pos, `expected ";" after the value of %s, found %s`, name.text, p.tok.describe())
	}
	if err := p.advance(); err != nil {
		return Value{}, err
	}
	return Value{Pos: it.Pos, Items: []Item{it}}, nil
}

// item reads adjacent words and strings as one value.
func (p *parser) item() (Item, error) {
	it := Item{Pos: p.tok.pos, Quoted: true}
	var b strings.Builder
	prevQuoted := false
	for n := 0; p.tok.kind == tokWord || p.tok.kind == tokString; n++ {
		quoted := p.tok.kind == tokString
		if n > 0 && !(quoted && prevQuoted) {
			// Words are separated by one space; adjacent strings are
			// concatenated, like C. A word glued to a string is joined
			// as written.
			if p.tok.spaceBefore {
				b.WriteByte(' ')
			}
		}
		b.WriteString(p.tok.text)
		it.Quoted = it.Quoted && quoted
		prevQuoted = quoted
		if err := p.advance(); err != nil {
			return it, err
		}
	}
	it.Text = b.String()
	return it, nil
}
