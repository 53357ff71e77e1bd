"""Docker Compose v2 variable interpolation, rule for rule.

Compose substitutes variables in every string value of a compose file before it
merges the files. The rules below are those of compose-go `template/template.go`
(the library inside `docker compose` v2) and its tests:

    $$              a literal `$`
    $VAR            the value of VAR; "" when VAR is unset
    ${VAR}          the same
    ${VAR:-word}    word when VAR is unset or empty, else VAR
    ${VAR-word}     word when VAR is unset, else VAR (an empty VAR stays empty)
    ${VAR:+word}    word when VAR is set and not empty, else ""
    ${VAR+word}     word when VAR is set (even empty), else ""
    ${VAR:?msg}     error when VAR is unset or empty, else VAR
    ${VAR?msg}      error when VAR is unset, else VAR

Names are `[_A-Za-z][_A-Za-z0-9]*`. A `$` followed by anything else (a space, a
digit, `}`, the end of the text) stays a literal `$`; `${` followed by anything
but a name and `}` or an operator is a syntax error (`${}`, `${ X}`, `${X }`,
`${X!}`, an unterminated `${X`).

The word after an operator is itself interpolated, so defaults nest:
`${A:-${B:-x}}`. Its end is the `}` that balances the opening `${` (every `{`
inside counts, so `${JWKS:-{"keys":[]}}` has the default `{"keys":[]}`). As in
compose, whose pattern cannot cross a line break, the word must close on the
same line; when the braces inside it do not balance, compose takes the last `}`
of the line, and so does this module.

Two compose behaviours that a shell would not share, kept on purpose:
- the word is interpolated even when it is not used, so `${A:-${B:?}}` fails
  when B is unset although A is set;
- an unset `$VAR` is not an error (compose only warns), it becomes "".

Errors are `ComposeError`s that name the variable and the offending position,
never a value: the text interpolated comes from compose files, the values from
`.env`, and only the former may appear in a message.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import TypeAlias

from core.errors import ComposeError

__all__ = ["interpolate", "referenced_variables"]

_NAME_START = frozenset("_ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz")
_NAME_CHARS = _NAME_START | frozenset("0123456789")
_OPERATORS = (":-", ":+", ":?", "-", "+", "?")
_MAX_MESSAGE = 120


@dataclass(frozen=True)
class _Variable:
    """One `$VAR` or `${VAR<op><word>}` reference."""

    name: str
    operator: str  # "" for a plain reference, else one of _OPERATORS
    word: tuple[_Node, ...]  # the parsed word after the operator
    word_text: str  # the word as written (used for `?` messages only)


_Node: TypeAlias = str | _Variable


def interpolate(text: str, env: Mapping[str, str]) -> str:
    """Substitute every variable in `text` with its value from `env`.

    `env` is the whole environment compose would use; nothing else (not
    `os.environ`) is consulted. A variable is "set" when it is a key of `env`.
    Raises `ComposeError` on bad syntax or when a `?`/`:?` variable is missing.
    """
    if "$" not in text:
        return text
    return _evaluate(_parse(text, 0), env)


def referenced_variables(text: str) -> set[str]:
    """Every variable name `text` refers to, in any branch, nested or not.

    `$$` escapes are not references. Raises `ComposeError` on bad syntax.
    """
    if "$" not in text:
        return set()
    names: set[str] = set()
    _collect(_parse(text, 0), names)
    return names


# -- parsing -------------------------------------------------------------------


def _parse(text: str, offset: int) -> tuple[_Node, ...]:
    """Split `text` into literal strings and variable references.

    `offset` is where `text` starts inside the caller's text, for messages.
    """
    nodes: list[_Node] = []
    literal: list[str] = []
    i = 0
    n = len(text)
    while i < n:
        dollar = text.find("$", i)
        if dollar < 0:
            literal.append(text[i:])
            break
        literal.append(text[i:dollar])
        nxt = text[dollar + 1] if dollar + 1 < n else ""
        if nxt == "$":
            literal.append("$")
            i = dollar + 2
        elif nxt in _NAME_START:
            end = _name_end(text, dollar + 1)
            _flush(literal, nodes)
            nodes.append(_Variable(text[dollar + 1 : end], "", (), ""))
            i = end
        elif nxt == "{":
            variable, i = _parse_braced(text, dollar, offset)
            _flush(literal, nodes)
            nodes.append(variable)
        else:
            literal.append("$")
            i = dollar + 1
    _flush(literal, nodes)
    return tuple(nodes)


def _parse_braced(text: str, start: int, offset: int) -> tuple[_Variable, int]:
    """Parse the `${...}` starting at `text[start]`; return it and the index after it."""
    name_start = start + 2
    if name_start >= len(text) or text[name_start] not in _NAME_START:
        raise _syntax_error(offset + start)
    name_end = _name_end(text, name_start)
    name = text[name_start:name_end]
    if text.startswith("}", name_end):
        return _Variable(name, "", (), ""), name_end + 1

    operator = next((op for op in _OPERATORS if text.startswith(op, name_end)), "")
    if not operator:
        raise _syntax_error(offset + start, name)
    word_start = name_end + len(operator)

    line_end = text.find("\n", start)
    if line_end < 0:
        line_end = len(text)
    last_brace = text.rfind("}", word_start, line_end)
    if last_brace < 0:
        raise _syntax_error(offset + start, name)
    close = _balancing_brace(text, word_start, last_brace)
    word_text = text[word_start:close]
    word = _parse(word_text, offset + word_start)
    return _Variable(name, operator, word, word_text), close + 1


def _balancing_brace(text: str, start: int, last: int) -> int:
    """The `}` closing a `${` whose word begins at `start`, or `last` if none balances."""
    depth = 1
    for index in range(start, last + 1):
        char = text[index]
        if char == "{":
            depth += 1
        elif char == "}":
            depth -= 1
            if depth == 0:
                return index
    return last


def _name_end(text: str, start: int) -> int:
    end = start + 1
    while end < len(text) and text[end] in _NAME_CHARS:
        end += 1
    return end


def _flush(literal: list[str], nodes: list[_Node]) -> None:
    if literal:
        joined = "".join(literal)
        if joined:
            nodes.append(joined)
        literal.clear()


def _syntax_error(position: int, name: str = "") -> ComposeError:
    about = f" in the reference to {name}" if name else ""
    return ComposeError(f"invalid interpolation syntax{about} at character {position + 1}")


# -- evaluation ----------------------------------------------------------------


def _evaluate(nodes: tuple[_Node, ...], env: Mapping[str, str]) -> str:
    return "".join(node if isinstance(node, str) else _substitute(node, env) for node in nodes)


def _substitute(variable: _Variable, env: Mapping[str, str]) -> str:
    name, operator = variable.name, variable.operator
    is_set = name in env
    value = env[name] if is_set else ""
    if not operator:
        return value
    # compose interpolates the word before it looks at the variable
    word = _evaluate(variable.word, env)
    if operator == ":-":
        return value if value else word
    if operator == "-":
        return value if is_set else word
    if operator == ":+":
        return word if value else ""
    if operator == "+":
        return word if is_set else ""
    if (operator == ":?" and not value) or (operator == "?" and not is_set):
        raise ComposeError(_missing_message(variable))
    return value


def _missing_message(variable: _Variable) -> str:
    message = f"required variable {variable.name} is missing a value"
    reason = variable.word_text.strip()
    # the reason is compose-file text; keep it unless it would need interpolating
    if reason and "$" not in reason:
        if len(reason) > _MAX_MESSAGE:
            reason = reason[:_MAX_MESSAGE] + "…"
        message = f"{message}: {reason}"
    return message


def _collect(nodes: tuple[_Node, ...], names: set[str]) -> None:
    for node in nodes:
        if isinstance(node, _Variable):
            names.add(node.name)
            _collect(node.word, names)
