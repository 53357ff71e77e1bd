"""A `.env` editor that reads values the way docker compose does and rewrites only them.

The file is kept as text. Parsing finds, for every assignment, the span of its
value token (`value`, `'value'` or `"value"`); `replace()` splices new tokens
into those spans and nothing else, so comments, blank lines, `export `, spacing,
inline comments, CRLF and a missing final newline all survive byte for byte.

The dialect is compose v2's: compose-go `dotenv/parser.go` (statement loop,
quoting, escapes) and `template/template.go` (interpolation), as vendored at
compose-go v2.13 and described in the compose docs ("Syntax for environment
files"). The odd corners are modelled rather than rejected, because compose
accepts them:

- `KEY = value`, `KEY: value` and `export KEY=value` all assign; a bare `KEY`
  line takes KEY from the environment compose runs in (or leaves it unset).
- Unquoted: the rest of the line, cut at the first " #" (a space, then #),
  trailing whitespace trimmed; `$VAR`, `${VAR:-x}` and `$$` are interpolated.
- Single-quoted: literal; only `\\'` loses its backslash. May span lines.
- Double-quoted: `\\"` loses its backslash, then `\\n \\r \\t \\\\ \\$ \\0ooo ...`
  are unescaped, then interpolation runs. May span lines.
- After a closing quote the scan simply continues: `A="x" # c` is a comment,
  `A="x"B=1` assigns B too.
- A leading UTF-8 BOM is ignored; the last assignment of a key wins.

Writing keeps the old token's style when the value fits it: bare for
`[A-Za-z0-9_.:/@+=,%-]` (what Supabase's `grep | cut -d=` scripts can read),
single quotes for anything without `'`, `\\`, CR or LF, else double quotes with
`\\\\ \\" $$ \\n \\r`. A double-quoted token stays double-quoted. NUL is refused.
"""

from __future__ import annotations

import contextlib
import os
import re
import stat
import tempfile
import unicodedata
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from core.errors import EnvFileError, InputError, InvalidSecretValue, SecretNotConfigured

__all__ = ["EnvFile", "backup", "write_atomic"]

_BOM = "\ufeff"

# compose-go's `isSpace`: blanks inside a line (never "\n").
_LINE_SPACE = frozenset("\t\v\f\r \x85\xa0")

# Go's `unicode.IsSpace` (Python's str.isspace also counts \x1c-\x1f, Go does not).
_GO_SPACE = frozenset(
    "\t\n\v\f\r \x85\xa0\u1680\u2000\u2001\u2002\u2003\u2004\u2005\u2006\u2007"
    "\u2008\u2009\u200a\u2028\u2029\u202f\u205f\u3000"
)

# Go's `\s` is ASCII only: `export\s+` needs one of these after the word.
_EXPORT = re.compile(r"export[\t\n\f\r ]+")

# Values written without quotes must survive compose and the `grep | cut -d=`
# that Supabase's own scripts use on .env, so only this alphabet stays bare.
_PLAIN = re.compile(r"[A-Za-z0-9_\-.:/@+=,%]*")


def _go_rstrip(text: str) -> str:
    end = len(text)
    while end and text[end - 1] in _GO_SPACE:
        end -= 1
    return text[:end]


def _is_key_char(char: str) -> bool:
    # compose-go: [letters, numbers, _ . - [ ]], letters and numbers in the Unicode sense.
    return char in "_.-[]" or unicodedata.category(char)[0] in "LN"


# ---------------------------------------------------------------------------
# Interpolation: a port of compose-go's template.Substitute.

# Go compiles `[_a-z]` under (?i) with simple case folding, which also admits
# U+017F (long s) and U+212A (Kelvin sign); Python's (?i) would add dotted I's too.
_NAME = "[_A-Za-z\u017f\u212a][_A-Za-z0-9\u017f\u212a]*"
_TEMPLATE = re.compile(
    r"\$(?:(?P<escaped>\$)|(?P<named>" + _NAME + r")"
    r"|\{(?:(?P<braced>" + _NAME + r"(?::?[-+?].*)?)\}|(?P<invalid>)))"
)
_OPERATORS = (":?", "?", ":-", "-", ":+", "+")

Lookup = Callable[[str], str | None]


class _TemplateError(Exception):
    """A value compose refuses to interpolate. The reason names variables, never values."""


def _substitute(template: str, lookup: Lookup) -> str:
    """`$$` -> `$`, `$NAME`, `${NAME}`, `${NAME:-default}` and friends; a lone `$` stays."""
    return _TEMPLATE.sub(lambda match: _replace_reference(match.group(0), lookup), template)


def _replace_reference(reference: str, lookup: Lookup) -> str:
    operator = _first_operator(reference)
    # `(.*)` in the pattern is greedy, so `${A:-x} ${B}` arrives whole: compose
    # resolves up to the balanced brace and interpolates the rest separately.
    head, rest = _split_at_closing_brace(reference)
    match = _TEMPLATE.match(head)
    if match is None:  # pragma: no cover - head always starts with a matching `$`
        raise _TemplateError("invalid interpolation")
    if match.group("escaped"):
        return "$"
    name = match.group("named") or ""
    braced = not name
    if braced:
        name = match.group("braced") or ""
    if not name:
        raise _TemplateError("invalid interpolation: `${` without a valid `NAME}`")
    if braced and operator is not None:
        value = _apply_operator(operator, name, lookup)
        if value is not None:
            return value + _substitute(rest, lookup)
    return lookup(name) or ""


def _first_operator(reference: str) -> str | None:
    found = [(reference.find(op), op) for op in _OPERATORS if op in reference]
    return min(found)[1] if found else None


def _split_at_closing_brace(reference: str) -> tuple[str, str]:
    # Mirrors getFirstBraceClosingIndex, including its skip of the char after `{`.
    depth, i = 0, 0
    while i < len(reference):
        if reference[i] == "}":
            depth -= 1
            if depth == 0:
                return reference[: i + 1], reference[i + 1 :]
        if reference[i] == "{":
            depth += 1
            i += 1
        i += 1
    return reference, ""


def _apply_operator(operator: str, substitution: str, lookup: Lookup) -> str | None:
    if operator not in substitution:
        return None
    name, argument = substitution.split(operator, 1)
    value = lookup(name)
    if operator in (":?", "?"):
        if value is None or (operator == ":?" and value == ""):
            _substitute(argument, lookup)  # compose resolves the message first
            raise _TemplateError(f"required variable {name} is missing a value")
        return value
    if operator in (":-", "-"):
        if value is None or (operator == ":-" and value == ""):
            return _substitute(argument, lookup)
        return value
    if value is not None and (operator == "+" or value != ""):
        return _substitute(argument, lookup)
    return value or ""


# ---------------------------------------------------------------------------
# Double-quoted escapes: compose-go's expandEscapes.

_ESCAPE = re.compile(r'\\(?:[abcfnrtv$"\\]|0[0-9]{0,3})')
_SIMPLE_ESCAPES = {
    "a": "\a",
    "b": "\b",
    "f": "\f",
    "n": "\n",
    "r": "\r",
    "t": "\t",
    "v": "\v",
    '"': '"',
    "\\": "\\",
}


def _expand_escape(match: re.Match[str]) -> str:
    escape = match.group(0)
    if escape == "\\$":
        return "$$"  # left for interpolation to turn into one `$`
    if escape.startswith("\\0"):
        # `\0ooo` is read as Go's `\ooo`: exactly three octal digits, at most 255;
        # anything else is kept as the rewritten `\...` text, as compose does.
        digits = escape[2:]
        if len(digits) == 3 and set(digits) <= set("01234567") and int(digits, 8) <= 255:
            return chr(int(digits, 8))
        return "\\" + digits
    return _SIMPLE_ESCAPES.get(escape[1], escape)  # `\c` is not a Go escape: kept


def _expand_escapes(text: str) -> str:
    return _ESCAPE.sub(_expand_escape, text)


# ---------------------------------------------------------------------------
# Parsing.


@dataclass(frozen=True)
class _Token:
    """A value token: `text[start:end]` is what an edit replaces; `value` is what compose sees."""

    start: int
    end: int
    quote: str  # "", "'" or '"'
    value: str = field(repr=False)
    next_pos: int  # where compose's scan resumes
    comment_follows: bool = False  # an unquoted value cut at " #"


@dataclass(frozen=True)
class _Assignment:
    """One `KEY=value` statement."""

    key: str
    line_no: int
    token: _Token


@dataclass
class _Parser:
    """compose-go's statement loop over the text, recording where each value lies."""

    text: str
    source: str
    environ: Mapping[str, str]
    values: dict[str, str] = field(default_factory=dict)
    assignments: list[_Assignment] = field(default_factory=list)

    def run(self) -> None:
        pos = 1 if self.text.startswith(_BOM) else 0
        while (pos := self._statement_start(pos)) >= 0:
            pos = self._statement(pos)

    def _line_no(self, pos: int) -> int:
        return self.text.count("\n", 0, pos) + 1

    def _error(self, pos: int, reason: str) -> EnvFileError:
        return EnvFileError(self.source, self._line_no(pos), reason)

    def _statement_start(self, pos: int) -> int:
        """Skip whitespace, blank lines and `#` comment lines; -1 at the end."""
        text = self.text
        while True:
            while pos < len(text) and text[pos] in _GO_SPACE:
                pos += 1
            if pos == len(text):
                return -1
            if text[pos] != "#":
                return pos
            pos = text.find("\n", pos)
            if pos < 0:
                return -1

    def _statement(self, pos: int) -> int:
        key, value_pos, inherited = self._key(pos)
        if inherited:
            # A bare `KEY` line: the environment's value, or nothing at all.
            if key in self.environ:
                self.values[key] = self.environ[key]
            return value_pos
        token = self._value(value_pos)
        self.values[key] = token.value
        self.assignments.append(_Assignment(key, self._line_no(pos), token))
        return token.next_pos

    def _key(self, pos: int) -> tuple[str, int, bool]:
        text = self.text
        line_start = pos
        if _EXPORT.match(text, pos):
            pos += len("export")
            while pos < len(text) and text[pos] in _LINE_SPACE:
                pos += 1
        if pos == len(text):
            raise self._error(line_start, "`export` without a key")
        end, after, inherited = self._key_end(pos, line_start)
        key = _go_rstrip(text[pos:end])
        if " " in key:
            raise self._error(line_start, "expected KEY=VALUE (the key contains a space)")
        while after < len(text) and text[after] in _LINE_SPACE:
            after += 1
        return key, after, inherited

    def _key_end(self, pos: int, line_start: int) -> tuple[int, int, bool]:
        """Where the key ends, where its value starts, and whether it is a bare `KEY` line."""
        text = self.text
        for i in range(pos, len(text)):
            char = text[i]
            if char in _LINE_SPACE or _is_key_char(char):
                continue
            if char in "=:\n":
                return i, i + 1, char == "\n"
            raise self._error(
                line_start,
                "expected KEY=VALUE (a key holds only letters, digits and _ . - [ ])",
            )
        # No `=` before the end of the file: compose reads the line as the
        # value of an empty key, so KEY stays unset.
        return pos, pos, False

    def _value(self, pos: int) -> _Token:
        """The value token at `pos`."""
        text = self.text
        quote = text[pos] if pos < len(text) and text[pos] in "'\"" else ""
        if quote:
            return self._quoted_value(pos, quote)
        line_end = text.find("\n", pos)
        next_pos = len(text) if line_end < 0 else line_end + 1
        line = text[pos : len(text) if line_end < 0 else line_end]
        raw = _go_rstrip(line.split(" #", 1)[0])
        start = pos
        if not raw:
            # An empty value is inserted before a CRLF's CR, not between CR and LF.
            while text[start - 1] == "\r":
                start -= 1
        value = self._interpolate(raw, pos)
        return _Token(start, start + len(raw), "", value, next_pos, " #" in line)

    def _quoted_value(self, pos: int, quote: str) -> _Token:
        text = self.text
        chars: list[str] = []
        escaped = False
        for i in range(pos + 1, len(text)):
            char = text[i]
            if escaped:
                escaped = False
                # An escaped quote drops its backslash; any other escape keeps it.
                chars.append(char if char == quote else "\\" + char)
            elif char == "\\":
                escaped = True
            elif char == quote:
                value = "".join(chars)
                if quote == '"':
                    value = self._interpolate(_expand_escapes(value), pos)
                return _Token(pos, i + 1, quote, value, i + 1)
            else:
                chars.append(char)
        kind = "double" if quote == '"' else "single"
        raise self._error(pos, f"unterminated {kind}-quoted value")

    def _interpolate(self, raw: str, pos: int) -> str:
        def lookup(name: str) -> str | None:
            # compose-go: the environment first, then the file's earlier keys.
            if name in self.environ:
                return self.environ[name]
            return self.values.get(name)

        try:
            return _substitute(raw, lookup)
        except _TemplateError as exc:
            raise self._error(pos, str(exc)) from None


# ---------------------------------------------------------------------------
# Writing values back.


def _encode(assignment: _Assignment, value: str) -> str:
    """The token compose reads back as exactly `value`, in the assignment's style if it can be."""
    if "\0" in value:
        raise InvalidSecretValue(
            assignment.key, "contains a NUL character, which no environment holds"
        )
    quote = assignment.token.quote
    # `KEY= # note` would read as "# note": an empty value before a comment needs quotes.
    bare_ok = value != "" or not assignment.token.comment_follows
    if quote == "" and bare_ok and _PLAIN.fullmatch(value):
        return value
    if quote != '"' and not any(char in value for char in "'\\\n\r"):
        return f"'{value}'"  # literal: no escapes, no interpolation
    return '"' + _escape_double(value) + '"'


def _escape_double(value: str) -> str:
    # `$$` survives interpolation as one `$`; the backslash escapes survive
    # compose-go's quote scan and expandEscapes, in that order.
    table = {"\\": "\\\\", '"': '\\"', "$": "$$", "\n": "\\n", "\r": "\\r"}
    return "".join(table.get(char, char) for char in value)


# ---------------------------------------------------------------------------
# The public type.


class EnvFile:
    """A parsed `.env`: the exact text, plus the values docker compose would read from it.

    `environ` is the environment compose runs in: it wins over earlier keys in
    `${VAR}` lookups and feeds bare `KEY` lines. It defaults to empty, so the
    values are the file's own.
    """

    source: str

    def __init__(
        self,
        text: str,
        *,
        source: str,
        environ: Mapping[str, str],
        assignments: tuple[_Assignment, ...],
        values: Mapping[str, str],
    ) -> None:
        self.source = source
        self._text = text
        self._environ = dict(environ)
        self._assignments = assignments
        # An empty key (`=x`, or a last line without `=`) is compose's quirk, not a variable.
        self._values = {key: value for key, value in values.items() if key}

    @classmethod
    def parse(
        cls, text: str, *, source: str = ".env", environ: Mapping[str, str] | None = None
    ) -> EnvFile:
        parser = _Parser(text, source, environ or {})
        parser.run()
        return cls(
            text,
            source=source,
            environ=parser.environ,
            assignments=tuple(parser.assignments),
            values=parser.values,
        )

    @classmethod
    def read(cls, path: Path, *, environ: Mapping[str, str] | None = None) -> EnvFile:
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            raise InputError(f"{path}: no such file (expected the deployment's .env)") from None
        except IsADirectoryError:
            raise InputError(f"{path}: is a directory, not a .env file") from None
        try:
            text = data.decode("utf-8")  # bytes as they are: CRLF stays CRLF
        except UnicodeDecodeError as exc:
            line_no = data.count(b"\n", 0, exc.start) + 1
            raise EnvFileError(str(path), line_no, "not valid UTF-8") from None
        return cls.parse(text, source=str(path), environ=environ)

    def get(self, key: str) -> str | None:
        return self._values.get(key)

    def __contains__(self, key: object) -> bool:
        return key in self._values

    def keys(self) -> list[str]:
        return list(self._values)

    def as_dict(self) -> dict[str, str]:
        return dict(self._values)

    def render(self) -> str:
        return self._text

    def __repr__(self) -> str:
        return f"<EnvFile {self.source!r}: {len(self._values)} keys>"

    def replace(self, changes: Mapping[str, str]) -> EnvFile:
        """A new EnvFile with every assignment of each key in `changes` set to its value."""
        assigned = {a.key for a in self._assignments}
        for key in changes:
            if not key or key not in assigned:
                raise SecretNotConfigured(f"{key} has no KEY=VALUE line in {self.source}")
        edits = [
            (a.token.start, a.token.end, _encode(a, changes[a.key]))
            for a in self._assignments
            if a.key in changes
        ]
        text = self._text
        for start, end, token in reversed(edits):
            text = text[:start] + token + text[end:]
        updated = EnvFile.parse(text, source=self.source, environ=self._environ)
        _check_written(updated, changes)
        return updated


def _check_written(updated: EnvFile, changes: Mapping[str, str]) -> None:
    """Every changed assignment must read back as the value asked for."""
    for assignment in updated._assignments:
        wanted = changes.get(assignment.key)
        if (
            wanted is not None and assignment.token.value != wanted
        ):  # pragma: no cover - a bug guard
            raise InvalidSecretValue(assignment.key, "cannot be written so compose reads it back")


# ---------------------------------------------------------------------------
# Files.


def write_atomic(path: Path, text: str) -> None:
    """Replace `path` with `text` atomically, keeping its mode (and owner when allowed).

    A temporary file in the same directory is written, fsynced and renamed over
    the target, then the directory is fsynced, so a crash leaves the old file or
    the new one, never a mix. A symlink is followed, so the link stays a link.
    New files get 0600.
    """
    target = Path(os.path.realpath(path))
    try:
        current: os.stat_result | None = target.stat()
    except FileNotFoundError:
        current = None
    fd, tmp_name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    try:
        with os.fdopen(fd, "wb") as tmp:
            tmp.write(text.encode("utf-8"))
            tmp.flush()
            _copy_ownership(tmp.fileno(), current)
            os.fsync(tmp.fileno())
        os.replace(tmp_name, target)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp_name)
        raise
    _fsync_dir(target.parent)


def _copy_ownership(fd: int, current: os.stat_result | None) -> None:
    if current is None:
        os.fchmod(fd, 0o600)
        return
    os.fchmod(fd, stat.S_IMODE(current.st_mode))
    # Only root may give a file away; otherwise the writer keeps it (and the mode above).
    with contextlib.suppress(PermissionError):
        os.fchown(fd, current.st_uid, current.st_gid)


def _fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def backup(path: Path, backup_dir: Path, *, label: str = "") -> Path:
    """Copy `path` to `backup_dir/<name>.<UTC timestamp>[.<label>].bak` (file 0600,
    directory 0700). `label` names what made it (a rotation id)."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise InputError(f"{path}: no such file to back up") from None
    backup_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    os.chmod(backup_dir, 0o700)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S.%fZ")
    if not re.fullmatch(r"[A-Za-z0-9_-]*", label):
        raise ValueError("a backup label holds letters, digits, '_' and '-' only")
    suffix = f".{label}" if label else ""
    fd, target = _create_exclusive(backup_dir, f"{path.name}.{stamp}{suffix}")
    try:
        with os.fdopen(fd, "wb") as out:
            out.write(data)
            out.flush()
            os.fsync(out.fileno())
    except BaseException:
        # A full disk leaves a truncated copy: it would pass for a backup, so it goes.
        target.unlink(missing_ok=True)
        raise
    _fsync_dir(backup_dir)
    return target


def _create_exclusive(directory: Path, stem: str) -> tuple[int, Path]:
    """Open a new 0600 file; never overwrite an earlier backup."""
    for attempt in range(1000):
        name = f"{stem}.bak" if attempt == 0 else f"{stem}-{attempt}.bak"
        target = directory / name
        try:
            fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            continue
        os.fchmod(fd, 0o600)  # whatever the umask
        return fd, target
    raise InputError(f"{directory}: cannot create a backup file for {stem}")
