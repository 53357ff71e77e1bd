"""Generated .env files: edits touch only the edited key's lines, and compose reads them back."""

from __future__ import annotations

from dataclasses import dataclass

from hypothesis import given, settings
from hypothesis import strategies as st

from core.envfile import EnvFile
from core.errors import EnvFileError

KEYS = ["A", "DB_PASS", "x.y", "K-1", "SMTP_PASS"]

# Characters each style can hold as written, without escapes (compose's reading).
UNQUOTED_CHARS = "abcXYZ019_-./:@+=,%#\\'\""
SINGLE_CHARS = 'abc XYZ019_-#$"{}!?*&()\t'
DOUBLE_CHARS = "abc XYZ019_-#'{}!?*&()\t"


@dataclass(frozen=True)
class Line:
    """One generated line: `prefix + token + suffix + ending`, and what compose reads."""

    key: str | None  # None: a comment, blank or whitespace line
    prefix: str
    token: str
    suffix: str
    ending: str
    value: str | None

    @property
    def text(self) -> str:
        return self.prefix + self.token + self.suffix + self.ending


@st.composite
def assignment_lines(draw: st.DrawFn) -> Line:
    key = draw(st.sampled_from(KEYS))
    indent = draw(st.sampled_from(["", "  ", "\t"]))
    export = draw(st.sampled_from(["", "export ", "export\t"]))
    separator = draw(st.sampled_from(["=", " = ", "= ", ": "]))
    style = draw(st.sampled_from(["bare", "single", "double"]))
    if style == "bare":
        value = draw(st.text(UNQUOTED_CHARS, max_size=12).filter(lambda v: v[:1] not in "'\""))
        token = value
        # An empty bare value followed by " # c" would read as "# c": no comment then.
        comment = draw(st.sampled_from(["", " # note", "   # two  #"])) if value else ""
        trailing = draw(st.sampled_from(["", " ", "\t "]))
        suffix = trailing + comment
    else:
        chars = SINGLE_CHARS if style == "single" else DOUBLE_CHARS
        value = draw(st.text(chars, max_size=12))
        quote = "'" if style == "single" else '"'
        token = quote + value + quote
        suffix = draw(st.sampled_from(["", " # note", "# tight", "  "]))
    return Line(key, indent + export + key + separator, token, suffix, "", value)


other_lines = st.sampled_from(["", "# a comment", "   ", "#KEY=commented out", "\t# x = 'y"]).map(
    lambda text: Line(None, text, "", "", "", None)
)


@st.composite
def env_texts(draw: st.DrawFn) -> list[Line]:
    lines = draw(st.lists(st.one_of(assignment_lines(), other_lines), min_size=1, max_size=12))
    if all(line.key is None for line in lines):
        lines.append(draw(assignment_lines()))
    endings = draw(st.lists(st.sampled_from(["\n", "\r\n"]), min_size=len(lines)))
    final = draw(st.booleans())
    out = []
    for i, line in enumerate(lines):
        last = i == len(lines) - 1
        ending = "" if last and not final else endings[i]
        out.append(Line(line.key, line.prefix, line.token, line.suffix, ending, line.value))
    return out


new_values = st.one_of(
    st.text(st.characters(exclude_characters="\0"), max_size=20),
    st.text("ab$'\"\\#{} \n\r\t:-", max_size=12),
    st.sampled_from(["", "plain-Value_1", "${A}", "$$", "a #b", "\\", "it's"]),
)


@settings(max_examples=400)
@given(env_texts(), st.data())
def test_replace_changes_only_the_lines_of_the_key(lines: list[Line], data: st.DataObject) -> None:
    text = "".join(line.text for line in lines)
    env = EnvFile.parse(text)
    assert env.render() == text

    expected: dict[str, str] = {}
    for line in lines:
        if line.key is not None and line.value is not None:
            expected[line.key] = line.value
    assert env.as_dict() == expected

    key = data.draw(st.sampled_from(sorted(expected)))
    value = data.draw(new_values)
    new = env.replace({key: value})

    # Only `key`'s lines differ, and in them only the token: prefix, inline
    # comment and line ending are kept.
    new_lines = new.render().split("\n")
    old_lines = text.split("\n")
    assert len(new_lines) == len(old_lines)
    for line, old, rendered in zip(lines, old_lines, new_lines, strict=False):
        if line.key == key:
            tail = line.suffix + line.ending.rstrip("\n")
            assert rendered.startswith(line.prefix)
            assert rendered.endswith(tail)
        else:
            assert rendered == old
    assert new.get(key) == value
    assert new.as_dict() == {**expected, key: value}


# Dense fragments of the syntax, joined at random. No `?`: a `${X:?}` elsewhere
# could make an edited file one compose refuses, a correct refusal, not a bug.
FRAGMENTS = [*"AB=:'\"\\$#{}- \t\r\nx", "export "]
fragment_texts = st.lists(st.sampled_from(FRAGMENTS), max_size=30).map("".join)


@settings(max_examples=500)
@given(fragment_texts)
def test_any_text_either_fails_cleanly_or_renders_back_exactly(text: str) -> None:
    try:
        env = EnvFile.parse(text)
    except EnvFileError as error:
        assert 1 <= error.line_no <= text.count("\n") + 1
        return
    assert env.render() == text


@settings(max_examples=500)
@given(fragment_texts, new_values)
def test_any_key_of_any_accepted_text_reads_back_what_was_written(text: str, value: str) -> None:
    try:
        env = EnvFile.parse(text)
    except EnvFileError:
        return
    for key in env.keys():  # noqa: SIM118 - EnvFile is not a mapping
        new = env.replace({key: value})
        assert new.get(key) == value
        assert EnvFile.parse(new.render()).get(key) == value


@given(st.sampled_from(["K=old", "K='old'", 'K="old"', "K=old # c", "K: 'old' # c"]), new_values)
def test_every_style_round_trips_every_value(line: str, value: str) -> None:
    new = EnvFile.parse(line + "\r\n").replace({"K": value})
    assert new.get("K") == value
    assert new.render().endswith("\r\n")
