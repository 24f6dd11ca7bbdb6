"""Splitting an SQL script into statements, the way SQL*Plus reads one.

`split_statements(text)` is a pure function; its rules:

- A line holding only `/` ends the current statement, whatever it is (SQL*Plus's "run the
  buffer"); an empty statement before it is dropped (the usual `END;` then `/`).
- Otherwise `;` ends a statement, unless it is inside a quote or a comment, or inside a
  PL/SQL block. The trailing `;` of plain SQL is stripped (Oracle rejects it); a PL/SQL
  block keeps its final `END;` with the `;` (Oracle needs it).
- Quotes: `'…'` (with `''`), `"…"` (with `""`), Oracle's `q'[…]'` family, PostgreSQL's
  `E'…'` (backslash escapes) and dollar quotes `$tag$…$tag$` (so `DO $$ … $$;` and
  `CREATE FUNCTION … AS $$ … $$` are plain statements). Comments: `--` to end of line and
  `/* … */`.
- A statement is a PL/SQL block when it starts with `BEGIN` (but not PostgreSQL's or
  SQLite's `BEGIN;` / `BEGIN TRANSACTION` …), `DECLARE` (but not PostgreSQL's
  `DECLARE c CURSOR`), a `<<label>>`, or `CREATE [OR REPLACE] [EDITIONABLE]` followed by
  `PROCEDURE`, `FUNCTION`, `PACKAGE [BODY]`, `TRIGGER` or `TYPE BODY`. Inside one, the
  splitter follows the nesting of `BEGIN`/`DECLARE`/`IS`/`AS` sections and `IF`, `LOOP`,
  `CASE` up to their `END`: the `;` after the `END` that closes the outermost section ends
  the statement. Nested subprograms, package bodies with an initialisation section and
  `CREATE FUNCTION … AS $$…$$` (PostgreSQL, turned back into plain SQL) are understood;
  anything fancier still works when the script ends the block with a `/` line.
- Statements holding only whitespace and comments are dropped; leading comments are
  removed from a statement (drivers look at its first word to decide what it is).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

_WORD = re.compile(r"[^\W\d][\w$#]*")
_NUMBER = re.compile(r"\d[\w.]*")
_DOLLAR_TAG = re.compile(r"\$(?:[A-Za-z_][A-Za-z0-9_]*)?\$")
_SLASH_LINE = re.compile(r"[ \t]*/[ \t]*(?:\r?\n|\Z)")
_NEXT_SLASH_LINE = re.compile(r"^[ \t]*/[ \t]*\r?$", re.MULTILINE)
_Q_CLOSE = {"[": "]", "{": "}", "(": ")", "<": ">"}

# Where a PL/SQL block starts; matched at the statement's first significant character.
_BLOCK_START = re.compile(
    r"""
    <<
    | BEGIN\b (?! \s* (?: ; | \Z
                        | TRANSACTION\b | WORK\b | ISOLATION\s+LEVEL\b | READ\s+(?:ONLY|WRITE)\b
                        | (?:NOT\s+)?DEFERRABLE\b | (?:DEFERRED|IMMEDIATE|EXCLUSIVE)\b ) )
    | DECLARE\b (?! \s+ (?:"[^"]*"|\w+) \s+
                    (?:BINARY|INSENSITIVE|ASENSITIVE|SCROLL|NO\s+SCROLL|CURSOR)\b )
    | CREATE \s+ (?: OR \s+ REPLACE \s+ )? (?: (?:NON)?EDITIONABLE \s+ )?
      (?: TEMP(?:ORARY)? \s+ )?
      (?: PROCEDURE | FUNCTION | PACKAGE | TRIGGER | TYPE \s+ BODY ) \b
    """,
    re.IGNORECASE | re.VERBOSE,
)
# Java sources hold `;`, braces and `//` comments: only a `/` line (or the end) ends them.
_JAVA = re.compile(
    r"CREATE\s+(?:OR\s+REPLACE\s+)?(?:AND\s+(?:RESOLVE|COMPILE)\s+)?(?:NOFORCE\s+)?JAVA\b",
    re.IGNORECASE,
)


@dataclass(frozen=True)
class Statement:
    text: str
    line: int  # 1-based line of the statement's first significant character
    plsql: bool = False  # a PL/SQL block (kept its final `;`)


@dataclass
class _Block:
    """What the splitter knows about the PL/SQL block it is inside."""

    # Open sections, innermost last: "decl" (a declaration section waiting for its BEGIN),
    # "pkg" (a package or type body: its END may follow declarations directly), "body"
    # (BEGIN … END), "ctl" (IF / LOOP / CASE … END), "compound" (a compound trigger).
    stack: list[str] = field(default_factory=list)
    parens: int = 0
    header: bool = False  # a PROCEDURE/FUNCTION header: its IS/AS opens a declaration
    package: bool = False  # a CREATE PACKAGE/TYPE BODY header: its IS/AS opens "pkg"
    after_as: bool = False  # the IS/AS just opened a section: look at what follows
    previous: str = ""  # the previous word, upper case
    plain: bool = False  # turned out to be plain SQL after all (PostgreSQL's AS $$…$$)


def split_statements(text: str) -> list[Statement]:
    """The statements of an SQL script, in order (see the module docstring for the rules)."""
    return _Splitter(text).run()


class _Splitter:
    def __init__(self, text: str) -> None:
        self.text = text
        self.out: list[Statement] = []
        self.start: int | None = None  # first significant character of the statement
        self.block: _Block | None = None

    # ------------------------------------------------------------------ the scan

    def run(self) -> list[Statement]:
        text, n = self.text, len(self.text)
        i = 0
        line_start = True
        while i < n:
            if line_start:
                line_start = False
                match = _SLASH_LINE.match(text, i)
                if match:
                    self._end(i, keep_semicolon=True)
                    i = match.end()
                    line_start = True
                    continue
            c = text[i]
            if c == "\n":
                line_start = True
                i += 1
            elif c in " \t\r\f\v":
                i += 1
            elif text.startswith("--", i):
                end = text.find("\n", i)
                i = n if end < 0 else end
            elif text.startswith("/*", i):
                end = text.find("*/", i + 2)
                i = n if end < 0 else end + 2
                line_start = False
            elif self.start is None and _JAVA.match(text, i):
                match = _NEXT_SLASH_LINE.search(text, i)
                stop = match.start() if match else n
                self.start = i
                self._end(stop, keep_semicolon=True)
                i = stop if match is None else match.end()
            else:
                if self.start is None:
                    self._begin(i)
                i = self._token(i)
        if self.start is not None:
            self._emit(self.text[self.start :], keep_semicolon=True)
        return self.out

    def _token(self, i: int) -> int:
        """Consume one significant token at i; returns the index after it."""
        text = self.text
        c = text[i]
        if c == "'":
            return self._quoted(i, "'")
        if c == '"':
            return self._quoted(i, '"')
        if c == "$":
            match = _DOLLAR_TAG.match(text, i)
            if match and self._dollar_quotes_allowed():
                close = text.find(match.group(), match.end())
                if close >= 0:
                    self._literal()
                    return close + len(match.group())
            return i + 1
        if c == ";":
            return self._semicolon(i)
        match = _WORD.match(text, i)
        if match:
            word = match.group()
            end = match.end()
            if end < len(text) and text[end] == "'":
                upper = word.upper()
                if upper in ("Q", "NQ") and end + 1 < len(text):
                    return self._q_quoted(end)
                if upper == "E":
                    return self._quoted(end, "'", backslash=True)
            self._word(word.upper())
            return end
        match = _NUMBER.match(text, i)
        if match:
            self._other()
            return match.end()
        if self.block is not None and not self.block.plain:
            if c == "(":
                self.block.parens += 1
            elif c == ")":
                self.block.parens = max(0, self.block.parens - 1)
        self._other()
        return i + 1

    def _quoted(self, i: int, quote: str, backslash: bool = False) -> int:
        text, j = self.text, i + 1
        while True:
            k = text.find(quote, j)
            if backslash:
                b = text.find("\\", j)
                if 0 <= b < k:
                    j = b + 2
                    continue
            if k < 0:
                j = len(text)
                break
            if text.startswith(quote * 2, k):  # a doubled quote stands for itself
                j = k + 2
                continue
            j = k + 1
            break
        self._literal()
        return j

    def _q_quoted(self, quote_at: int) -> int:
        """Oracle's q'<delim>…<delim>' starting at the quote after q."""
        text = self.text
        opening = text[quote_at + 1]
        closing = _Q_CLOSE.get(opening, opening) + "'"
        k = text.find(closing, quote_at + 2)
        self._literal()
        return len(text) if k < 0 else k + 2

    # ------------------------------------------------------------------ statements

    def _begin(self, i: int) -> None:
        self.start = i
        self.block = _Block() if _BLOCK_START.match(self.text, i) else None

    def _semicolon(self, i: int) -> int:
        block = self.block
        if block is None or block.plain:
            self._end(i, keep_semicolon=False)
            return i + 1
        block.after_as = False
        if block.parens:
            return i + 1
        if not block.stack:
            self._end(i + 1, keep_semicolon=True)
            return i + 1
        block.header = False  # a forward declaration or a spec: no body follows
        block.previous = ";"
        return i + 1

    def _end(self, stop: int, keep_semicolon: bool) -> None:
        if self.start is not None:
            self._emit(self.text[self.start : stop], keep_semicolon)
        self.start = None
        self.block = None

    def _emit(self, text: str, keep_semicolon: bool) -> None:
        block = self.block
        plsql = block is not None and not block.plain
        text = text.rstrip()
        if not plsql and not keep_semicolon:
            text = text.removesuffix(";").rstrip()
        if text:
            line = self.text.count("\n", 0, self.start) + 1
            self.out.append(Statement(text, line, plsql))

    # ------------------------------------------------------------------ PL/SQL nesting

    def _dollar_quotes_allowed(self) -> bool:
        block = self.block
        # Inside PL/SQL `$$NAME` is an inquiry directive, not a quote.
        return block is None or block.plain or not block.stack or block.after_as

    def _literal(self) -> None:
        block = self.block
        if block is not None and block.after_as and len(block.stack) == 1:
            # `CREATE FUNCTION … AS $$…$$` / `AS '…'`: PostgreSQL, the body is a string.
            block.plain = True
        self._other()

    def _other(self) -> None:
        if self.block is not None:
            self.block.after_as = False
            self.block.previous = ""

    def _word(self, word: str) -> None:
        block = self.block
        if block is None or block.plain:
            return
        stack, previous = block.stack, block.previous
        if block.after_as:
            block.after_as = False
            if word in ("LANGUAGE", "EXTERNAL"):  # a call spec: no body
                stack.pop()
        if previous == "END" and word in ("IF", "LOOP", "CASE"):
            pass  # END IF / END LOOP / END CASE: already closed by the END
        elif word == "BEGIN":
            if stack and stack[-1] in ("decl", "pkg"):
                stack[-1] = "body"
            else:
                stack.append("body")
        elif word == "DECLARE":
            stack.append("decl")
        elif word in ("IF", "LOOP", "CASE"):
            if stack:  # outside any section it is a header's `IF NOT EXISTS` (SQLite)
                stack.append("ctl")
        elif word == "END":
            if stack:
                stack.pop()
        elif word in ("PROCEDURE", "FUNCTION"):
            block.header = True
        elif not stack and (word == "PACKAGE" or (word == "BODY" and previous == "TYPE")):
            block.package = True
        elif word == "TRIGGER" and previous == "COMPOUND":
            stack.append("compound")
        elif word in ("IS", "AS") and block.parens == 0 and previous != "SELF":
            if block.package:
                block.package = block.header = False
                stack.append("pkg")
            elif block.header:
                block.header = False
                stack.append("decl")
                block.after_as = True
        block.previous = word
