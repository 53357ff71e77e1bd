"""The .env editor: values as docker compose (compose-go dotenv) reads them, edits byte-exact."""

from __future__ import annotations

import os
import re
import stat
from pathlib import Path

import pytest

from core.envfile import EnvFile, backup, write_atomic
from core.errors import EnvFileError, InputError, InvalidSecretValue, SecretNotConfigured
from tests.conftest import REFERENCE_2025_11, REFERENCE_CURRENT, reference_dir

SECRET = "hunter2-s3cr3t"


def value_of(text: str, key: str = "A", **environ: str) -> str | None:
    return EnvFile.parse(text, environ=environ).get(key)


# --- reading values the way compose does ------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("A=b", "b"),
        ("A = b", "b"),
        ("A= b", "b"),
        ("A =b", "b"),
        ("  A=b", "b"),
        ("A=b   ", "b"),
        ("A=", ""),
        ("A=\n", ""),
        ("A=foobar=", "foobar="),
        ("A: b", "b"),  # compose-go accepts yaml-style declarations
        ("A=1:B", "1:B"),
        ("A=some quoted phrase", "some quoted phrase"),
    ],
)
def test_unquoted_values_are_the_rest_of_the_line_trimmed(text: str, expected: str) -> None:
    assert value_of(text) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("A=b # comment", "b"),
        ("A=b# not a comment", "b# not a comment"),
        ("A=b\t# tab is not a space here", "b\t# tab is not a space here"),
        ("A= # not a comment either", "# not a comment either"),
        ("A=b #one #two", "b"),
    ],
)
def test_an_inline_comment_needs_a_space_before_the_hash(text: str, expected: str) -> None:
    assert value_of(text) == expected


@pytest.mark.parametrize(
    "text",
    ["export A=b", "export\tA=b", "  export A=b", "\texport   A=b"],
)
def test_export_prefix_is_ignored(text: str) -> None:
    assert value_of(text) == "b"


def test_export_is_only_a_prefix_when_followed_by_whitespace() -> None:
    env = EnvFile.parse("exportA=1\nexport_B=2\nexport.C=3\n")
    assert env.keys() == ["exportA", "export_B", "export.C"]


def test_keys_may_hold_dots_dashes_brackets_and_unicode_letters() -> None:
    env = EnvFile.parse("a.b=1\na[1]=2\nK-1=3\nárvíztűrő=4\n")
    assert env.as_dict() == {"a.b": "1", "a[1]": "2", "K-1": "3", "árvíztűrő": "4"}


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("A='b'", "b"),
        ("A='b # c' # d", "b # c"),
        ("A='$B ${B}'", "$B ${B}"),
        ("A='let\\'s go'", "let's go"),
        ("A='a\\nb'", "a\\nb"),  # no escapes in single quotes
        ("A='a\\\\b'", "a\\\\b"),  # not even \\: both backslashes stay
        ("A='a\nb'", "a\nb"),  # multi-line
        ("A=''", ""),
    ],
)
def test_single_quoted_values_are_literal(text: str, expected: str) -> None:
    assert value_of(text, B="x") == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ('A="b"', "b"),
        ('A="b#c" # comment', "b#c"),
        ('A="a\\nb"', "a\nb"),
        ('A="a\\tb\\rc"', "a\tb\rc"),
        ('A="say \\"hi\\""', 'say "hi"'),
        ('A="back\\\\slash"', "back\\slash"),
        ('A="ends in backslash\\\\"', "ends in backslash\\"),
        ('A="\\$B"', "$B"),
        ('A="$$B"', "$B"),
        ('A="$B"', "x"),
        ('A="\\0123"', "S"),  # octal, as compose-go rewrites \0ooo
        ('A="\\c"', "\\c"),  # not an escape: kept
        ('A="it\'s"', "it's"),
        ('A="line1\nline2"', "line1\nline2"),
        ('A=""', ""),
    ],
)
def test_double_quoted_values_unescape_then_interpolate(text: str, expected: str) -> None:
    assert value_of(text, B="x") == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("B=x\nA=$B", "x"),
        ("B=x\nA=${B}y", "xy"),
        ("A=$B", ""),  # unset: blank, as compose warns and does
        ("A=${B:-dflt}", "dflt"),
        ("B=\nA=${B:-dflt}", "dflt"),
        ("B=\nA=${B-dflt}", ""),
        ("B=x\nA=${B:+alt}", "alt"),
        ("A=${B:+alt}", ""),
        ("A=${B:-${C:-deep}}", "deep"),
        ("B=x\nA=${B:-d} and ${B}", "x and x"),
        ("A=$$B", "$B"),
        ("A=a$", "a$"),  # a `$` that starts no reference stays
        ("A=$1 $!", "$1 $!"),
        ("A='${B}'", "${B}"),
        ('B=x\nA="${B}"', "x"),
    ],
)
def test_interpolation_follows_compose(text: str, expected: str) -> None:
    assert value_of(text) == expected


def test_an_unused_default_is_not_interpolated() -> None:
    # compose-go v2.13 resolves a default or an error message only when it is used.
    assert value_of("C=x\nA=${C:-${NOPE:?}}") == "x"
    with pytest.raises(EnvFileError, match="required variable NOPE"):
        value_of("A=${C:-${NOPE:?}}")


def test_the_environment_wins_over_earlier_keys_in_interpolation() -> None:
    assert value_of("B=file\nA=$B", B="process") == "process"


def test_a_bare_key_line_takes_the_environment_value_or_stays_unset() -> None:
    assert value_of("A\n", A="from-env") == "from-env"
    env = EnvFile.parse("A\nB=1\n")
    assert "A" not in env
    assert env.keys() == ["B"]


def test_a_last_line_without_equals_is_not_a_key() -> None:
    # compose-go reads it as the value of an empty key; no variable results.
    env = EnvFile.parse("B=1\nA")
    assert env.as_dict() == {"B": "1"}


def test_the_last_assignment_wins_and_keys_keep_file_order() -> None:
    env = EnvFile.parse("B=1\nA=2\nB=3\n")
    assert env.get("B") == "3"
    assert env.keys() == ["B", "A"]
    assert "A" in env
    assert "C" not in env
    assert env.get("C") is None


def test_scanning_continues_after_a_closing_quote() -> None:
    env = EnvFile.parse("A=\"x\"B=1\nC='y' # comment\n")
    assert env.as_dict() == {"A": "x", "B": "1", "C": "y"}


def test_crlf_line_endings_do_not_leak_into_values() -> None:
    env = EnvFile.parse("A=b\r\nB='c'\r\nC=\"d\"\r\nD=\r\nE\r\n")
    assert env.as_dict() == {"A": "b", "B": "c", "C": "d", "D": ""}


def test_a_utf8_bom_is_ignored_and_kept() -> None:
    text = "\ufeffA=1\n"
    env = EnvFile.parse(text)
    assert env.get("A") == "1"
    assert env.render() == text


def test_blank_lines_comments_and_whitespace_lines_are_ignored() -> None:
    text = "\n# comment\n   \n\t# indented comment\n\r\nA=1\n#B=2\n"
    assert EnvFile.parse(text).as_dict() == {"A": "1"}


# --- round trip -------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text",
    [
        "",
        "\n",
        "A=1",
        "A=1\n",
        "\ufeff# c\r\nexport A = 'x' # c\r\nB=\"m\nl\"\r\n\r\n",
        'A="x"B=1\nC\n',
        "A=b\t# odd\n   \n",
    ],
)
def test_render_gives_back_the_exact_text(text: str) -> None:
    assert EnvFile.parse(text).render() == text


@pytest.mark.parametrize("folder", [REFERENCE_CURRENT, REFERENCE_2025_11])
def test_the_upstream_env_example_round_trips(folder: Path) -> None:
    path = reference_dir(folder) / ".env.example"
    env = EnvFile.read(path)
    assert env.render().encode() == path.read_bytes()
    assert env.get("POSTGRES_PASSWORD")
    assert env.get("MAILER_URLPATHS_INVITE") == "/auth/v1/verify"


@pytest.mark.parametrize("folder", [REFERENCE_CURRENT, REFERENCE_2025_11])
def test_rotating_upstream_keys_touches_only_their_lines(folder: Path) -> None:
    path = reference_dir(folder) / ".env.example"
    env = EnvFile.read(path)
    changes = {"POSTGRES_PASSWORD": "abcDEF123", "JWT_SECRET": "x" * 40}
    new = env.replace(changes)
    before, after = env.render().split("\n"), new.render().split("\n")
    assert len(before) == len(after)
    changed = [i for i, (old, line) in enumerate(zip(before, after, strict=True)) if old != line]
    assert [after[i] for i in changed] == ["POSTGRES_PASSWORD=abcDEF123", "JWT_SECRET=" + "x" * 40]
    assert new.as_dict() == {**env.as_dict(), **changes}


# --- replace ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("line", "value", "expected"),
    [
        ("A=old", "new_Value-1", "A=new_Value-1"),
        ("A=old", "p@ss:w/rd+=,%.", "A=p@ss:w/rd+=,%."),
        ("A=old", "has space", "A='has space'"),
        ("A=old", "$HOME#x", "A='$HOME#x'"),
        ("A=old", 'say "hi"', "A='say \"hi\"'"),
        ("A=old", "it's", 'A="it\'s"'),
        ("A=old", "back\\slash", 'A="back\\\\slash"'),
        ("A=old", "two\nlines", 'A="two\\nlines"'),
        ("A=old", "", "A="),
        ("A='old'", "plain", "A='plain'"),
        ("A='old'", "it's $x", 'A="it\'s $$x"'),
        ('A="old"', "plain", 'A="plain"'),
        ('A="old"', 'a"b\\c$d\re', 'A="a\\"b\\\\c$$d\\re"'),
    ],
)
def test_replace_keeps_the_quoting_style_when_the_value_allows(
    line: str, value: str, expected: str
) -> None:
    new = EnvFile.parse(line + "\n").replace({"A": value})
    assert new.render() == expected + "\n"
    assert new.get("A") == value


@pytest.mark.parametrize(
    "value",
    [
        "plain",
        "",
        " leading and trailing ",
        "#start",
        "a #b",
        "'",
        '"',
        "\\",
        "\\'",
        '\\"',
        "$",
        "$$",
        "${X}",
        "${X:-y}",
        "$X",
        "\\$X",
        "\\0123",
        "\\n",
        "tab\there",
        "\r\n",
        "é ü 日本 🔑",
        "\x85\xa0\u2028",
        "=:export ",
    ],
)
@pytest.mark.parametrize("line", ["A=old", "A='old'", 'A="old"', "export A = old # note", "A: old"])
def test_compose_reads_back_exactly_what_replace_wrote(line: str, value: str) -> None:
    new = EnvFile.parse(f"X=1\n{line}\r\nZ=2\n", environ={"X": "env"}).replace({"A": value})
    assert new.get("A") == value
    assert new.get("Z") == "2"


def test_replace_keeps_export_spacing_inline_comment_and_line_ending() -> None:
    text = "# head\r\n  export A = old # the db password\r\nB=keep"
    new = EnvFile.parse(text).replace({"A": "new"})
    assert new.render() == "# head\r\n  export A = new # the db password\r\nB=keep"


def test_replace_changes_every_assignment_of_the_key() -> None:
    new = EnvFile.parse("A=1\nB=2\nA='3'\n").replace({"A": "x y"})
    assert new.render() == "A='x y'\nB=2\nA='x y'\n"


def test_an_empty_value_is_filled_in_before_the_crlf() -> None:
    new = EnvFile.parse("A=\r\nB=  \r\nC=").replace({"A": "1", "B": "2", "C": "3"})
    assert new.render() == "A=1\r\nB=  2\r\nC=3"


def test_an_empty_value_before_an_inline_comment_is_quoted() -> None:
    # `A= # note` would read as "# note".
    new = EnvFile.parse("A=x # note\n").replace({"A": ""})
    assert new.render() == "A='' # note\n"
    assert new.get("A") == ""


def test_replace_reaches_keys_that_interpolate_the_changed_one() -> None:
    env = EnvFile.parse("PW=old\nURL=postgres://u:${PW}@db/x\n")
    assert env.replace({"PW": "new"}).get("URL") == "postgres://u:new@db/x"


def test_replace_returns_a_new_file_and_leaves_the_old_one_alone() -> None:
    env = EnvFile.parse("A=1\n")
    new = env.replace({"A": "2"})
    assert env.get("A") == "1"
    assert env.render() == "A=1\n"
    assert new.source == env.source


def test_replace_with_no_changes_is_identity() -> None:
    text = "A=1 # c\r\n"
    assert EnvFile.parse(text).replace({}).render() == text


def test_replace_refuses_a_key_that_is_not_assigned() -> None:
    env = EnvFile.parse("A=1\nB\n", source="/srv/supabase/.env", environ={"B": "x"})
    with pytest.raises(SecretNotConfigured, match="SMTP_PASS") as caught:
        env.replace({"A": "2", "SMTP_PASS": SECRET})
    assert SECRET not in str(caught.value)
    with pytest.raises(SecretNotConfigured, match="B"):
        env.replace({"B": "2"})  # only a bare line: nothing to rewrite


def test_replace_refuses_a_nul_and_names_only_the_key() -> None:
    with pytest.raises(InvalidSecretValue) as caught:
        EnvFile.parse("SMTP_PASS=x\n").replace({"SMTP_PASS": SECRET + "\0"})
    assert caught.value.key == "SMTP_PASS"
    assert SECRET not in str(caught.value)


def test_repr_shows_no_values() -> None:
    env = EnvFile.parse(f"A={SECRET}\n")
    assert SECRET not in repr(env)


# --- malformed files --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "line_no", "reason"),
    [
        (f'A=1\n\nB="{SECRET}\nC=2\n', 3, "unterminated double-quoted value"),
        (f"# c\nB='{SECRET}\n", 2, "unterminated single-quoted value"),
        (f"A=1\nMY KEY={SECRET}\n", 2, "the key contains a space"),
        (f"A=1\n{SECRET}!=x\n", 2, "a key holds only"),
        (f"A=1\n{SECRET} two\n", 2, "the key contains a space"),  # a stray value
        (f'A="ok" {SECRET} words\n', 1, "the key contains a space"),
        ("A=1\nexport ", 2, "`export` without a key"),
        (f"A=1\nB=${{{SECRET}\n", 2, "invalid interpolation"),
        (f"A=1\nB=x\nC=${{NOPE:?{SECRET}}}\n", 3, "required variable NOPE"),
    ],
)
def test_a_malformed_file_names_the_line_and_reason_but_no_value(
    text: str, line_no: int, reason: str
) -> None:
    with pytest.raises(EnvFileError) as caught:
        EnvFile.parse(text, source="/srv/supabase/.env")
    error = caught.value
    assert error.line_no == line_no
    assert error.path == "/srv/supabase/.env"
    assert reason in error.reason
    assert str(error).startswith(f"/srv/supabase/.env:{line_no}: ")
    assert SECRET not in str(error)
    assert SECRET[:4] not in str(error)


def test_an_assignment_that_compose_accepts_oddly_is_kept_not_refused() -> None:
    # compose reads `KEY\tNAME` as a key with a tab in it; harmless, so preserved.
    text = "KEY\tNAME=1\nA=2\n"
    env = EnvFile.parse(text)
    assert env.get("A") == "2"
    assert env.replace({"A": "3"}).render() == "KEY\tNAME=1\nA=3\n"


# --- files ------------------------------------------------------------------------------


def test_read_keeps_crlf_and_names_the_source(tmp_path: Path) -> None:
    path = tmp_path / ".env"
    path.write_bytes(b"A=1\r\nB=2")
    env = EnvFile.read(path)
    assert env.render() == "A=1\r\nB=2"
    assert env.source == str(path)


def test_read_of_a_missing_file_is_an_input_error(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="no such file"):
        EnvFile.read(tmp_path / ".env")


def test_read_of_invalid_utf8_names_the_line(tmp_path: Path) -> None:
    path = tmp_path / ".env"
    path.write_bytes(b"A=1\nB=\xff\xfe\n")
    with pytest.raises(EnvFileError) as caught:
        EnvFile.read(path)
    assert caught.value.line_no == 2


def test_a_malformed_file_read_from_disk_names_its_path(tmp_path: Path) -> None:
    path = tmp_path / ".env"
    path.write_text(f'A="{SECRET}\n')
    with pytest.raises(EnvFileError, match=re.escape(f"{path}:1: ")):
        EnvFile.read(path)


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_write_atomic_keeps_the_mode_of_the_file_it_replaces(tmp_path: Path) -> None:
    path = tmp_path / ".env"
    path.write_text("A=1\n")
    path.chmod(0o640)
    inode = path.stat().st_ino
    write_atomic(path, "A=2\r\n")
    assert path.read_bytes() == b"A=2\r\n"
    assert mode(path) == 0o640
    assert path.stat().st_ino != inode  # replaced, not rewritten in place
    assert sorted(p.name for p in tmp_path.iterdir()) == [".env"]


def test_write_atomic_keeps_the_owner_when_it_may(tmp_path: Path) -> None:
    path = tmp_path / ".env"
    path.write_text("A=1\n")
    if os.geteuid() == 0:
        os.chown(path, 1234, 5678)
    before = path.stat()
    write_atomic(path, "A=2\n")
    after = path.stat()
    assert (after.st_uid, after.st_gid) == (before.st_uid, before.st_gid)


def test_write_atomic_creates_new_files_0600(tmp_path: Path) -> None:
    path = tmp_path / "new.env"
    write_atomic(path, "A=1\n")
    assert mode(path) == 0o600
    assert path.read_text() == "A=1\n"


def test_write_atomic_writes_through_a_symlink(tmp_path: Path) -> None:
    real = tmp_path / "real.env"
    real.write_text("A=1\n")
    link = tmp_path / ".env"
    link.symlink_to(real)
    write_atomic(link, "A=2\n")
    assert link.is_symlink()
    assert real.read_text() == "A=2\n"


def test_write_atomic_leaves_no_temporary_file_when_it_fails(tmp_path: Path) -> None:
    with pytest.raises(UnicodeEncodeError):
        write_atomic(tmp_path / ".env", "A=\udc80\n")  # a lone surrogate cannot be encoded
    assert list(tmp_path.iterdir()) == []


def test_backup_is_a_0600_copy_in_a_0700_folder(tmp_path: Path) -> None:
    path = tmp_path / ".env"
    path.write_bytes(b"A=1\r\n")
    path.chmod(0o644)
    folder = tmp_path / "backups"
    copy = backup(path, folder)
    assert copy.parent == folder
    assert re.fullmatch(r"\.env\.\d{8}T\d{6}\.\d{6}Z\.bak", copy.name)
    assert copy.read_bytes() == b"A=1\r\n"
    assert mode(copy) == 0o600
    assert mode(folder) == 0o700


def test_backup_never_overwrites_an_earlier_backup(tmp_path: Path) -> None:
    path = tmp_path / ".env"
    path.write_text("A=1\n")
    folder = tmp_path / "b"
    folder.mkdir(mode=0o755)
    copies = {backup(path, folder) for _ in range(5)}
    assert len(copies) == 5
    assert mode(folder) == 0o700


def test_backup_of_a_missing_file_is_an_input_error(tmp_path: Path) -> None:
    with pytest.raises(InputError):
        backup(tmp_path / ".env", tmp_path / "b")
