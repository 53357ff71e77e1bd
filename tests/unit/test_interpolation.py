"""core.interpolation against the rules of compose-go `template/template.go`.

Cases marked "compose-go" restate, with this module's API, cases of
compose-go's `template/template_test.go` (FOO="first", BAR="", the rest unset).
"""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from core.errors import ComposeError
from core.interpolation import interpolate, referenced_variables

ENV = {"FOO": "first", "BAR": ""}  # compose-go's test mapping; UNSET is not a key


@pytest.mark.parametrize(
    ("template", "expected"),
    [
        # plain references
        ("$FOO", "first"),
        ("${FOO}", "first"),
        ("This $FOO var", "This first var"),
        ("This ${missing} var", "This  var"),  # unset: empty, not an error
        ("This ${BAR} var", "This  var"),
        ("$FOO-bar", "first-bar"),  # compose-go: a name stops at `-` (docker/compose#8601)
        ("${FOO}${FOO}", "firstfirst"),
        ("pre$FOO.post", "prefirst.post"),
        ("$_x1 ${_x1}", " "),
        # :-  default when unset or empty
        ("ok ${missing:-def}", "ok def"),
        ("ok ${BAR:-def}", "ok def"),
        ("ok ${FOO:-def}", "ok first"),
        # -   default when unset only
        ("ok ${missing-def}", "ok def"),
        ("ok ${BAR-def}", "ok "),
        ("ok ${FOO-def}", "ok first"),
        # :+  alternative when set and not empty
        ("ok ${FOO:+presence_value}", "ok presence_value"),
        ("ok ${BAR:+presence_value}", "ok "),
        ("ok ${UNSET_VAR:+presence_value}", "ok "),
        # +   alternative when set, even empty
        ("ok ${FOO+presence_value}", "ok presence_value"),
        ("ok ${BAR+presence_value}", "ok presence_value"),
        ("ok ${UNSET_VAR+presence_value}", "ok "),
        # ? and :? pass the value through when satisfied
        ("ok ${FOO:?err}", "ok first"),
        ("ok ${FOO?err}", "ok first"),
        ("ok ${BAR?err}", "ok "),
        # the operator is the first one after the name (compose-go TestPrecedence)
        ("${UNSET_VAR-myerror?msg}", "myerror?msg"),
        ("${FOO?bar-baz}", "first"),
        ("ok ${BAR:-/non:-alphanumeric}", "ok /non:-alphanumeric"),
        # text around an expression does not change it (TestInterpolationExternalInterference)
        ("-ok ${BAR:-defaultValue}", "-ok defaultValue"),
        (":-ok ${UNSET-defaultValue}", ":-ok defaultValue"),
        (":?ok ${BAR:-defaultValue}", ":?ok defaultValue"),
        ("+ok ${BAR-defaultValue}", "+ok "),
    ],
)
def test_compose_go_cases(template: str, expected: str) -> None:
    assert interpolate(template, ENV) == expected


@pytest.mark.parametrize(
    ("template", "expected"),
    [
        ("ok ${UNSET_VAR-$FOO}", "ok first"),
        ("ok ${UNSET_VAR-${FOO}}", "ok first"),
        ("ok ${UNSET_VAR-${FOO} ${FOO}}", "ok first first"),
        ("ok ${BAR:-${FOO}}", "ok first"),
        ("ok ${BAR+$FOO ${FOO:+second}}", "ok first second"),
        ("+ok ${UNSET:-${BAR-defaultValue}}", "+ok "),
        ("${A:-${B:-x}}", "x"),
        ("${A:-${B:-${C:-deep}}}!", "deep!"),
        ("${API_GW_HTTP_PORT:-${KONG_HTTP_PORT:-8000}}:8000/tcp", "8000:8000/tcp"),
    ],
)
def test_nested_defaults(template: str, expected: str) -> None:
    assert interpolate(template, ENV) == expected


def test_nested_default_prefers_the_outer_then_inner_variable() -> None:
    template = "${API_GW_HTTP_PORT:-${KONG_HTTP_PORT:-8000}}"
    assert interpolate(template, {"KONG_HTTP_PORT": "8080"}) == "8080"
    assert interpolate(template, {"API_GW_HTTP_PORT": "9000", "KONG_HTTP_PORT": "8080"}) == "9000"
    assert interpolate(template, {"API_GW_HTTP_PORT": "", "KONG_HTTP_PORT": ""}) == "8000"


def test_unset_and_empty_differ_only_for_the_colon_free_operators() -> None:
    unset: dict[str, str] = {}
    empty = {"V": ""}
    assert interpolate("[${V-d}]", unset) == "[d]"
    assert interpolate("[${V-d}]", empty) == "[]"
    assert interpolate("[${V:-d}]", unset) == interpolate("[${V:-d}]", empty) == "[d]"
    assert interpolate("[${V+a}]", unset) == "[]"
    assert interpolate("[${V+a}]", empty) == "[a]"
    assert interpolate("[${V:+a}]", unset) == interpolate("[${V:+a}]", empty) == "[]"
    assert interpolate("[${V?m}]", empty) == "[]"
    with pytest.raises(ComposeError):
        interpolate("[${V?m}]", unset)
    with pytest.raises(ComposeError):
        interpolate("[${V:?m}]", empty)


@pytest.mark.parametrize(
    ("template", "expected"),
    [
        ("$${foo}", "${foo}"),  # compose-go TestEscaped
        ("$$", "$"),
        ("$$FOO", "$FOO"),
        ("$$$FOO", "$first"),
        ("$$$$", "$$"),
        ('eval "$$(cat /etc/pooler/pooler.exs)"', 'eval "$(cat /etc/pooler/pooler.exs)"'),
        ("${UNSET:-$$literal}", "$literal"),
    ],
)
def test_double_dollar_is_a_literal_dollar(template: str, expected: str) -> None:
    assert interpolate(template, ENV) == expected


@pytest.mark.parametrize("template", ["a $ string", "^REGEX$", "$}", "$", "$1", "$-x", "100$"])
def test_a_dollar_not_followed_by_a_name_or_brace_is_kept(template: str) -> None:
    assert interpolate(template, ENV) == template


@pytest.mark.parametrize(
    ("template", "expected"),
    [
        ('${JWT_JWKS:-{"keys":[]}}', '{"keys":[]}'),  # braces inside the word balance
        ('${FOO:-{"keys":[]}}', "first"),
        ("${UNSET:-{x}", "{x"),  # unbalanced: the last `}` of the line closes it
        ("${UNSET:-a} {b}", "a {b}"),
        ("${UNSET-}", ""),
        ("${FOO-}", "first"),
    ],
)
def test_where_a_braced_expression_ends(template: str, expected: str) -> None:
    assert interpolate(template, ENV) == expected


def test_values_are_not_interpolated_again() -> None:
    assert interpolate("${A}", {"A": "${B}", "B": "no"}) == "${B}"
    assert interpolate("$A$B", {"A": "$", "B": "$"}) == "$$"


def test_the_word_is_interpolated_even_when_unused_as_compose_does() -> None:
    with pytest.raises(ComposeError, match="required variable B"):
        interpolate("${A:-${B:?needed}}", {"A": "set"})


@pytest.mark.parametrize(
    "template",
    [
        "${",
        "${}",
        "${ }",
        "${ foo}",
        "${foo }",
        "${foo!}",
        "${foo:}",
        "${foo:x}",
        "${1abc}",
        "${FOO:-unterminated",
        "${FOO:-a\nb}",  # the word must close on its line
        "ok ${UNSET:-${}}",
    ],
)
def test_invalid_syntax_is_a_compose_error(template: str) -> None:
    with pytest.raises(ComposeError, match="invalid interpolation syntax"):
        interpolate(template, ENV)
    with pytest.raises(ComposeError):
        referenced_variables(template)


def test_syntax_errors_say_where() -> None:
    with pytest.raises(ComposeError, match=r"reference to foo at character 5"):
        interpolate("abc ${foo!}", ENV)


@pytest.mark.parametrize(
    ("template", "message"),
    [
        (
            "not ok ${UNSET_VAR:?Mandatory Variable Unset}",
            "required variable UNSET_VAR is missing a value: Mandatory Variable Unset",
        ),
        (
            "not ok ${BAR:?Mandatory Variable Empty}",
            "required variable BAR is missing a value: Mandatory Variable Empty",
        ),
        ("not ok ${UNSET_VAR:?}", "required variable UNSET_VAR is missing a value"),
        (
            "not ok ${UNSET_VAR?Mandatory}",
            "required variable UNSET_VAR is missing a value: Mandatory",
        ),
        ("not ok ${UNSET_VAR?}", "required variable UNSET_VAR is missing a value"),
        ("${UNSET_VAR?bar-baz}", "required variable UNSET_VAR is missing a value: bar-baz"),
    ],
)
def test_required_variables(template: str, message: str) -> None:
    with pytest.raises(ComposeError) as caught:
        interpolate(template, ENV)
    assert str(caught.value) == message


def test_errors_never_carry_values() -> None:
    secret = "s3cr3t-value-that-must-not-leak"
    env = {"PASSWORD": secret, "EMPTY": ""}
    for template in (
        "${EMPTY:?the password is ${PASSWORD}}",
        "postgres://u:${PASSWORD}@db/${EMPTY:?}",
        "${PASSWORD} ${oops!}",
    ):
        with pytest.raises(ComposeError) as caught:
            interpolate(template, env)
        assert secret not in str(caught.value)


@pytest.mark.parametrize(
    ("template", "names"),
    [
        ("no variables", set()),
        ("$A ${B} ${C:-x} ${D-x} ${E:+x} ${F+x} ${G:?x} ${H?x}", set("ABCDEFGH")),
        ("${JWT_JWKS:-${JWT_SECRET}}", {"JWT_JWKS", "JWT_SECRET"}),
        ("${A:-${B:-$C}}", {"A", "B", "C"}),
        ("${A:?missing ${B}}", {"A", "B"}),
        ("$$A $${B} $$$C", {"C"}),
        ('"Authorization: Bearer ${ANON_KEY}"', {"ANON_KEY"}),
        ("$FOO-bar $foo_1", {"FOO", "foo_1"}),
    ],
)
def test_referenced_variables(template: str, names: set[str]) -> None:
    assert referenced_variables(template) == names


def test_interpolate_reads_only_the_given_mapping(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ROTATOR_TEST_ONLY_IN_OS_ENV", "from-os")
    assert interpolate("[${ROTATOR_TEST_ONLY_IN_OS_ENV}]", {}) == "[]"


@given(st.text())
def test_escaping_every_dollar_gives_the_text_back(text: str) -> None:
    escaped = text.replace("$", "$$")
    assert interpolate(escaped, {"A": "x"}) == text
    assert referenced_variables(escaped) == set()


@given(st.text(alphabet=st.characters(blacklist_characters="$")))
def test_text_without_dollar_is_unchanged(text: str) -> None:
    assert interpolate(text, ENV) == text


@given(
    name=st.from_regex(r"[A-Za-z_][A-Za-z0-9_]{0,12}", fullmatch=True),
    value=st.text(),
    set_=st.booleans(),
)
def test_default_operators_agree_with_their_definitions(name: str, value: str, set_: bool) -> None:
    env = {name: value} if set_ else {}
    present = set_ and value != ""
    assert interpolate(f"${{{name}:-d}}", env) == (value if present else "d")
    assert interpolate(f"${{{name}-d}}", env) == (value if set_ else "d")
    assert interpolate(f"${{{name}:+a}}", env) == ("a" if present else "")
    assert interpolate(f"${{{name}+a}}", env) == ("a" if set_ else "")
    assert interpolate(f"${name}", env) == interpolate(f"${{{name}}}", env) == value * set_
