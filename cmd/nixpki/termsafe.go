package main

import (
	"fmt"
	"strings"
	"unicode"
	"unicode/utf8"
)

// Stored strings that came from outside (a request's subject, a certificate's
// names, a signer's reason) are printed through termSafe or, as JSON, through
// printJSON: a terminal then shows what is stored, and a stored newline, tab, ANSI
// escape or bidirectional override cannot draw a fake row or hide text.

// termSafe escapes control characters (C0, DEL, C1: terminal escapes among them),
// invisible Unicode format characters (U+200B, U+202E, U+FEFF, …), invalid UTF-8
// and the backslash, as Go writes them in strings ("\n", "\x1b", "\u202e"), so that
// an escaped string never looks like an unescaped one.
func termSafe(s string) string { return escapeForTerminal(s, false) }

// jsonTermSafe escapes, in JSON text, what encoding/json leaves raw but a terminal
// acts on (DEL, C1 controls, format characters), as \uXXXX: the JSON means the same.
func jsonTermSafe(s string) string { return escapeForTerminal(s, true) }

func plainRune(r rune) bool {
	return r != utf8.RuneError && unicode.IsPrint(r) && !unicode.Is(unicode.Cf, r)
}

func escapeForTerminal(s string, inJSON bool) string {
	// keep: what is printed as it is. In JSON, backslashes are encoding/json's own
	// escapes and newlines its indentation.
	keep := func(r rune) bool {
		if inJSON {
			return plainRune(r) || r == '\n'
		}
		return plainRune(r) && r != '\\'
	}
	if !strings.ContainsFunc(s, func(r rune) bool { return !keep(r) }) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); {
		r, n := utf8.DecodeRuneInString(s[i:])
		switch {
		case keep(r):
			b.WriteRune(r)
		case inJSON && r > 0xffff:
			r1, r2 := utf16Pair(r)
			fmt.Fprintf(&b, `\u%04x\u%04x`, r1, r2)
		case inJSON:
			fmt.Fprintf(&b, `\u%04x`, r)
		case r == utf8.RuneError && n == 1:
			fmt.Fprintf(&b, `\x%02x`, s[i])
		case r == '\\':
			b.WriteString(`\\`)
		case r == '\n':
			b.WriteString(`\n`)
		case r == '\t':
			b.WriteString(`\t`)
		case r == '\r':
			b.WriteString(`\r`)
		case r < 0x80:
			fmt.Fprintf(&b, `\x%02x`, r)
		case r <= 0xffff:
			fmt.Fprintf(&b, `\u%04x`, r)
		default:
			fmt.Fprintf(&b, `\U%08x`, r)
		}
		i += n
	}
	return b.String()
}

func utf16Pair(r rune) (rune, rune) {
	r -= 0x10000
	return 0xd800 + (r>>10)&0x3ff, 0xdc00 + r&0x3ff
}
