"""Campaign templates: rendering, strictness, seed placeholders, sandbox, files, unsubscribe."""

from __future__ import annotations

import base64
import random
import subprocess
import sys
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import jinja2
import markupsafe
import msgspec
import pytest
from hypothesis import given, settings, strategies as st
from jinja2.sandbox import ImmutableSandboxedEnvironment

from xcomm._errors import ConfigurationError, ValidationError
from xcomm._templates import (
    _NOT_PLAIN,
    CompiledTemplate,
    RenderedContent,
    Template,
    TemplateError,
    UnsubscribeSigner,
)

SECRET = b"0123456789abcdef-test-secret"
BASE = "https://example.com/unsubscribe"


def _token(url: str) -> str:
    return parse_qs(urlsplit(url).query)["token"][0]


# -- Template values ---------------------------------------------------------------------------


def test_template_is_an_immutable_value() -> None:
    template = Template(subject="Hi", text="Hello", name="welcome")
    with pytest.raises(AttributeError):
        template.subject = "changed"  # type: ignore[misc]
    assert template == Template(subject="Hi", text="Hello", name="welcome")
    assert msgspec.json.decode(msgspec.json.encode(template), type=Template) == template


@pytest.mark.parametrize("bodies", [{}, {"text": None, "html": None}, {"text": "", "html": ""}])
def test_template_needs_a_body(bodies: dict[str, str | None]) -> None:
    with pytest.raises(ConfigurationError, match="text or an html body"):
        Template(subject="Hi", **bodies)


def test_template_rejects_a_path_and_points_to_from_files(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError, match=r"from_files"):
        Template(subject="Hi", html=tmp_path / "x.html")  # type: ignore[arg-type]


# -- rendering ---------------------------------------------------------------------------------


def test_render_all_parts() -> None:
    compiled = Template(
        subject="  Hi {{ first_name }}!\n",
        text="Hello {{ first_name }}, you have {{ points }} points.\n",
        html="<p>Hello {{ first_name }}</p>\n",
    ).compile()
    content = compiled.render({"first_name": "Ada", "points": 42})
    assert content == RenderedContent(
        subject="Hi Ada!",
        text="Hello Ada, you have 42 points.\n",
        html="<p>Hello Ada</p>\n",
    )
    assert content.list_unsubscribe_url is None
    assert compiled.variables == {"first_name", "points"}


def test_missing_body_part_renders_none() -> None:
    content = Template(subject="s", html="<b>x</b>").compile().render({})
    assert content.text is None
    assert content.html == "<b>x</b>"


def test_html_is_autoescaped_text_and_subject_are_not() -> None:
    compiled = Template(subject="{{ v }}", text="{{ v }}", html="<p>{{ v }}</p>").compile()
    content = compiled.render({"v": "<script>alert('x')</script>"})
    assert content.subject == "<script>alert('x')</script>"
    assert content.text == "<script>alert('x')</script>"
    assert content.html == "<p>&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt;</p>"


def test_safe_markup_passes_through_html() -> None:
    content = Template(subject="s", html="{{ v | safe }}").compile().render({"v": "<b>b</b>"})
    assert content.html == "<b>b</b>"


@pytest.mark.parametrize("part", ["subject", "text", "html"])
def test_missing_variable_names_part_and_variable(part: str) -> None:
    sources = {"subject": "Hi", "text": "Hello", "html": "<p>Hello</p>"}
    sources[part] = "{{ first_name }}"
    compiled = Template(**sources).compile()
    with pytest.raises(TemplateError) as info:
        compiled.render({}, recipient="ada@example.com")
    err = info.value
    assert isinstance(err, ValidationError)
    assert (err.part, err.variable, err.recipient) == (part, "first_name", "ada@example.com")
    message = str(err)
    assert f"the {part} template" in message
    assert "add 'first_name' to this recipient's personalization data" in message
    assert "{{ first_name | default('there') }}" in message
    assert "ada@example.com" not in message


def test_missing_attribute_names_the_attribute() -> None:
    compiled = Template(subject="s", text="{{ user.name }}").compile()
    with pytest.raises(TemplateError, match="has no attribute 'name'") as info:
        compiled.render({"user": {}})
    assert (info.value.part, info.value.variable) == ("text", "name")


def test_missing_variable_in_condition_fails_but_is_defined_works() -> None:
    with pytest.raises(TemplateError):
        Template(subject="s", text="{% if vip %}VIP{% endif %}").compile().render({})
    compiled = Template(subject="s", text="{% if vip is defined and vip %}VIP{% endif %}")
    assert compiled.compile().render({}).text == ""


def test_default_filter() -> None:
    compiled = Template(
        subject="Hi {{ first_name | default('there') }}", text="{{ city | default('') }}."
    ).compile()
    assert compiled.render({}).subject == "Hi there"
    assert compiled.render({}).text == "."
    assert compiled.render({"first_name": "Ada"}).subject == "Hi Ada"


def test_runtime_failure_is_a_template_error() -> None:
    compiled = Template(subject="s", text="{{ a + 1 }}").compile()
    with pytest.raises(TemplateError, match="TypeError") as info:
        compiled.render({"a": "x"}, recipient="r@example.com")
    assert (info.value.part, info.value.recipient) == ("text", "r@example.com")


def test_parts_share_the_variables_but_not_their_assignments() -> None:
    compiled = Template(
        subject="{% set greeting = 'Hi' %}{{ greeting }} {{ name }}",
        text="{{ greeting | default('no greeting') }} {{ name }}",
        html="{% set name = 'Mallory' %}<p>{{ name }}</p>",
    ).compile()
    first = compiled.render({"name": "Ada <ada>"})
    assert (first.subject, first.text, first.html) == (
        "Hi Ada <ada>",
        "no greeting Ada <ada>",
        "<p>Mallory</p>",
    )
    second = compiled.render({"name": "Bob"})
    assert (second.subject, second.text) == ("Hi Bob", "no greeting Bob")


def test_jinja_globals_are_available_and_variables_shadow_them() -> None:
    compiled = Template(subject="{{ range(3) | list }}", text="{{ dict(a=1) }} {{ x }}").compile()
    content = compiled.render({"x": 1})
    assert (content.subject, content.text) == ("[0, 1, 2]", "{'a': 1} 1")
    shadowed = Template(subject="{{ range }}", text="t").compile().render({"range": "mine"})
    assert shadowed.subject == "mine"


def test_each_recipient_fails_alone_on_a_missing_variable() -> None:
    compiled = Template(subject="Hi {{ name }}", text="x", html="<p>{{ code }}</p>").compile()
    good = compiled.render({"name": "Ada", "code": "<1>"})
    assert good.html == "<p>&lt;1&gt;</p>"
    with pytest.raises(TemplateError) as info:
        compiled.render({"name": "Bob"}, recipient="bob@example.com")
    assert (info.value.part, info.value.variable, info.value.recipient) == (
        "html",
        "code",
        "bob@example.com",
    )
    assert isinstance(info.value.__cause__, jinja2.UndefinedError)
    assert compiled.render({"name": "Cy", "code": "2"}).subject == "Hi Cy"


def test_unsubscribe_url_overrides_a_variable_of_that_name() -> None:
    signer = UnsubscribeSigner(SECRET, BASE)
    compiled = Template(subject="s", text="{{ unsubscribe_url }}").compile(unsubscribe=signer)
    content = compiled.render(
        {"unsubscribe_url": "https://evil.example/"}, recipient="a@example.com", campaign_id="c"
    )
    assert content.text == content.list_unsubscribe_url
    assert content.text is not None and content.text.startswith(BASE)


def test_mapping_variables_are_not_modified() -> None:
    signer = UnsubscribeSigner(SECRET, BASE)
    variables = {"name": "Ada"}
    compiled = Template(subject="s", text="{{ name }} {{ unsubscribe_url }}").compile(
        unsubscribe=signer
    )
    compiled.render(variables, recipient="ada@example.com", campaign_id="c")
    assert variables == {"name": "Ada"}


# -- seed placeholders -------------------------------------------------------------------------


def test_seed_placeholders_in_every_part() -> None:
    compiled = Template(
        subject="Welcome {first_name}",
        text="Hi {first_name}, your code is {code}.",
        html="<p>Hi {first_name}</p>",
    ).compile()
    content = compiled.render({"first_name": "<Ada>", "code": "X1"})
    assert content.subject == "Welcome <Ada>"
    assert content.text == "Hi <Ada>, your code is X1."
    assert content.html == "<p>Hi &lt;Ada&gt;</p>"


def test_seed_dotted_placeholder() -> None:
    compiled = Template(subject="Hi {user.first_name}", text="{user.address.city}").compile()
    content = compiled.render({"user": {"first_name": "Ada", "address": {"city": "London"}}})
    assert (content.subject, content.text) == ("Hi Ada", "London")


def test_seed_conversion_leaves_css_braces_alone() -> None:
    html = (
        "<style>p { color: red } a{color:blue} .x{} @media (x) { b { margin: 0 } }</style>"
        "<p>{name}</p>"
    )
    content = Template(subject="s", html=html).compile().render({"name": "Ada"})
    assert content.html == html.replace("{name}", "Ada")


def test_seed_missing_variable_is_strict() -> None:
    with pytest.raises(TemplateError) as info:
        Template(subject="Hi {first_name}", text="x").compile().render({})
    assert (info.value.part, info.value.variable) == ("subject", "first_name")


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ("{{ name }} and {name}", "Ada and {name}"),
        ("{% if true %}{name}{% endif %}", "{name}"),
        ("{# note #}{name}", "{name}"),
    ],
)
def test_jinja_templates_are_not_converted(source: str, expected: str) -> None:
    assert Template(subject="s", text=source).compile().render({"name": "Ada"}).text == expected


def test_seed_conversion_is_per_part() -> None:
    compiled = Template(subject="{{ a }}", text="{a}").compile()
    assert compiled.render({"a": "x"}).text == "x"


# -- syntax errors and the sandbox ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("part", "source", "line"),
    [
        ("subject", "Hi {{ name ", 1),
        ("text", "line one\nline two\n{% if x %}\n{% endfor %}\n", 4),
        ("html", "<p>\n</p>\n{{ name }}}\n{{ x | }}", 4),
    ],
)
def test_syntax_error_names_part_and_line(part: str, source: str, line: int) -> None:
    sources = {"subject": "Hi", "text": "Hello", "html": "<p>Hello</p>"}
    sources[part] = source
    template = Template(**sources)
    with pytest.raises(TemplateError) as info:
        template.compile()
    err = info.value
    assert (err.part, err.line, err.variable) == (part, line, None)
    assert f"the {part} template has a syntax error on line {line}" in str(err)
    assert isinstance(err.__cause__, jinja2.TemplateSyntaxError)


@pytest.mark.parametrize(
    "source",
    [
        "{{ ''.__class__ }}",
        "{{ ''.__class__.__mro__[1].__subclasses__() }}",
        "{{ user.__class__.__init__.__globals__ }}",
        "{{ (user | attr('__class__')) }}",
        "{{ cycler.__init__.__globals__ }}",
        "{{ user.update({'x': 1}) }}",
        "{{ items.append(1) }}",
    ],
)
def test_sandbox_blocks_escapes(source: str) -> None:
    compiled = Template(subject="s", text=source).compile()
    with pytest.raises(TemplateError, match="sandbox forbids") as info:
        compiled.render({"user": {"name": "Ada"}, "items": []})
    assert info.value.part == "text"
    assert "<class" not in str(info.value)


def test_sandbox_in_html_and_subject_too() -> None:
    for sources in (
        {"subject": "{{ ''.__class__ }}", "text": "x"},
        {"subject": "s", "html": "{{ ''.__class__ }}"},
    ):
        with pytest.raises(TemplateError, match="sandbox forbids"):
            Template(**sources).compile().render({})


# -- subject header injection --------------------------------------------------------------------


@pytest.mark.parametrize(
    "value", ["Ada\r\nBcc: evil@example.com", "Ada\nX: y", "Ada\rX", "Ada\x00", "Ada\u2028x"]
)
def test_line_break_in_rendered_subject_is_rejected(value: str) -> None:
    compiled = Template(subject="Hi {{ name }}!", text="{{ name }}").compile()
    with pytest.raises(TemplateError, match="one line") as info:
        compiled.render({"name": value}, recipient="ada@example.com")
    assert (info.value.part, info.value.recipient) == ("subject", "ada@example.com")


def test_line_breaks_allowed_in_bodies_and_surrounding_subject_whitespace_stripped() -> None:
    compiled = Template(subject="{{ name }}", text="{{ name }}").compile()
    content = compiled.render({"name": "\n Ada \r\n"})
    assert content.subject == "Ada"
    assert content.text == "\n Ada \r\n"


# -- files -------------------------------------------------------------------------------------


def test_from_files_reads_real_files(tmp_path: Path) -> None:
    (tmp_path / "welcome.txt").write_text("Hi {{ name }} ✓\n", encoding="utf-8")
    (tmp_path / "welcome.html").write_text("<p>Hi {name}</p>\n", encoding="utf-8")
    (tmp_path / "subject.txt").write_text("Welcome, {{ name }}\n", encoding="utf-8")
    template = Template.from_files(
        subject=tmp_path / "subject.txt",
        text=str(tmp_path / "welcome.txt"),
        html=tmp_path / "welcome.html",
    )
    assert template.name == "welcome"
    assert template.subject == "Welcome, {{ name }}"
    content = template.compile().render({"name": "Zoë"})
    assert content == RenderedContent(
        subject="Welcome, Zoë", text="Hi Zoë ✓\n", html="<p>Hi Zoë</p>\n"
    )


def test_from_files_str_subject_is_a_literal(tmp_path: Path) -> None:
    (tmp_path / "body.txt").write_text("x", encoding="utf-8")
    template = Template.from_files(subject="subject.txt", text=tmp_path / "body.txt", name="n")
    assert (template.subject, template.name, template.html) == ("subject.txt", "n", None)


def test_from_files_encoding(tmp_path: Path) -> None:
    (tmp_path / "b.txt").write_bytes("Grüße".encode("latin-1"))
    template = Template.from_files(subject="s", text=tmp_path / "b.txt", encoding="latin-1")
    assert template.text == "Grüße"
    with pytest.raises(ConfigurationError, match="cannot read the text template"):
        Template.from_files(subject="s", text=tmp_path / "b.txt")


@pytest.mark.parametrize("part", ["subject", "text", "html"])
def test_from_files_missing_file_names_the_path(tmp_path: Path, part: str) -> None:
    (tmp_path / "ok.txt").write_text("x", encoding="utf-8")
    missing = tmp_path / "nope" / f"{part}.tpl"
    paths: dict[str, object] = {"subject": "s", "text": tmp_path / "ok.txt"}
    paths[part] = missing
    with pytest.raises(ConfigurationError) as info:
        Template.from_files(**paths)  # type: ignore[arg-type]
    assert str(missing) in str(info.value)
    assert f"the {part} template" in str(info.value)
    assert isinstance(info.value.__cause__, FileNotFoundError)


def test_from_files_directory_is_a_configuration_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError, match=str(tmp_path)):
        Template.from_files(subject="s", html=tmp_path)


def test_from_files_needs_a_body() -> None:
    with pytest.raises(ConfigurationError):
        Template.from_files(subject="s")


# -- unsubscribe -------------------------------------------------------------------------------


def test_unsubscribe_url_per_recipient_and_in_templates() -> None:
    signer = UnsubscribeSigner(SECRET, BASE)
    compiled = Template(
        subject="News",
        text="Bye: {{ unsubscribe_url }}",
        html='<a href="{{ unsubscribe_url }}">x</a>',
    ).compile(unsubscribe=signer)
    assert "unsubscribe_url" not in compiled.variables
    a = compiled.render({}, recipient="ada@example.com", campaign_id="spring")
    b = compiled.render({}, recipient="bob@example.com", campaign_id="spring")
    assert a.list_unsubscribe_url is not None and b.list_unsubscribe_url is not None
    assert a.list_unsubscribe_url != b.list_unsubscribe_url
    assert a.list_unsubscribe_url.startswith(BASE + "?token=")
    assert a.text == f"Bye: {a.list_unsubscribe_url}"
    assert a.html == f'<a href="{a.list_unsubscribe_url}">x</a>'
    assert signer.verify(_token(a.list_unsubscribe_url)) == ("spring", "ada@example.com")


def test_no_unsubscribe_url_without_recipient_and_campaign() -> None:
    compiled = Template(subject="s", text="x").compile(unsubscribe=UnsubscribeSigner(SECRET, BASE))
    assert compiled.render({}, recipient="ada@example.com").list_unsubscribe_url is None
    assert compiled.render({}, campaign_id="c").list_unsubscribe_url is None
    strict = Template(subject="s", text="{{ unsubscribe_url }}").compile()
    with pytest.raises(TemplateError) as info:
        strict.render({}, recipient="ada@example.com", campaign_id="c")
    assert info.value.variable == "unsubscribe_url"


@pytest.mark.parametrize(
    "recipient", ["ada@example.com", "Ada.Lovelace+news@Example.COM", "用户@例子.广告"]
)
@pytest.mark.parametrize("campaign", ["spring-2026", "c", "Newsletter #12 / ünïcode", "a.b"])
def test_verify_round_trip(recipient: str, campaign: str) -> None:
    signer = UnsubscribeSigner(SECRET, BASE)
    token = _token(signer.url_for(campaign, recipient))
    assert token == signer.token(campaign, recipient)
    assert set(token) <= set("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_.")
    assert signer.verify(token) == (campaign, recipient.lower())


def test_token_has_url_safe_characters_in_the_url() -> None:
    url = UnsubscribeSigner(SECRET, BASE).url_for("c?&=#/+", "a+b@example.com")
    token = url.split("?token=", 1)[1]
    assert set(token) <= set("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_.")


def test_str_secret_equals_bytes_secret() -> None:
    token = UnsubscribeSigner(SECRET.decode(), BASE).token("c", "a@example.com")
    assert UnsubscribeSigner(SECRET, BASE).verify(token) == ("c", "a@example.com")


def test_tampered_tokens_are_refused() -> None:
    signer = UnsubscribeSigner(SECRET, BASE)
    token = signer.token("spring", "ada@example.com")
    payload, mac = token.split(".")

    def b64(text: str) -> str:
        return base64.urlsafe_b64encode(text.encode()).rstrip(b"=").decode()

    other_recipient = f"{b64('spring' + chr(0) + 'eve@example.com')}.{mac}"
    other_campaign = f"{b64('summer' + chr(0) + 'ada@example.com')}.{mac}"
    flipped = mac[:-1] + ("A" if mac[-1] != "A" else "B")
    for bad in [
        other_recipient,
        other_campaign,
        f"{payload}.{flipped}",
        token[:-1],
        token[1:],
        token + "A",
        f"{payload}.{mac}.{mac}",
        payload,
        "",
        ".",
        "garbage",
        "!!!!.@@@@@@@@@@@@@@@@@@@@@@",
        f"{payload}=.{mac}",
        f"{payload} .{mac}",
        "A" * 100_000,
        None,
        b"bytes",
        12,
    ]:
        assert signer.verify(bad) is None, bad
    other = UnsubscribeSigner(b"another-secret-16-bytes", BASE)
    assert other.verify(token) is None
    assert signer.verify(token) == ("spring", "ada@example.com")


def test_verify_never_raises_on_random_input() -> None:
    signer = UnsubscribeSigner(SECRET, BASE)
    alphabet = "ABCabc019-_.=+/ \x00é"
    rng = random.Random(1234)
    for _ in range(2000):
        junk = "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 60)))
        assert signer.verify(junk) is None


@pytest.mark.parametrize(
    ("base", "expected_prefix", "suffix"),
    [
        ("https://example.com/u", "https://example.com/u?token=", ""),
        ("https://example.com/u?list=news", "https://example.com/u?list=news&token=", ""),
        ("https://example.com/u?", "https://example.com/u?token=", ""),
        ("https://example.com/u?a=1&", "https://example.com/u?a=1&token=", ""),
        ("https://example.com/u#done", "https://example.com/u?token=", "#done"),
        ("https://example.com/u?a=1#x", "https://example.com/u?a=1&token=", "#x"),
        ("http://localhost:8000/u", "http://localhost:8000/u?token=", ""),
        ("http://127.0.0.1/u", "http://127.0.0.1/u?token=", ""),
    ],
)
def test_base_url_forms(base: str, expected_prefix: str, suffix: str) -> None:
    signer = UnsubscribeSigner(SECRET, base)
    url = signer.url_for("c", "ada@example.com")
    assert url.startswith(expected_prefix)
    assert url.endswith(suffix)
    assert signer.verify(_token(url)) == ("c", "ada@example.com")
    if "list=news" in base:
        assert parse_qs(urlsplit(url).query)["list"] == ["news"]


@pytest.mark.parametrize(
    "base",
    [
        "http://example.com/u",
        "ftp://example.com/u",
        "example.com/u",
        "https:///u",
        "",
        "javascript:alert(1)",
        "http://localhost.evil.com/u",
    ],
)
def test_base_url_must_be_https(base: str) -> None:
    with pytest.raises(ConfigurationError, match="https://"):
        UnsubscribeSigner(SECRET, base)


@pytest.mark.parametrize("secret", [b"", b"short", "fifteen-chars!!", b"x" * 15])
def test_secret_must_be_long_enough(secret: bytes | str) -> None:
    with pytest.raises(ConfigurationError, match="16 bytes"):
        UnsubscribeSigner(secret, BASE)


def test_signer_repr_hides_the_secret() -> None:
    signer = UnsubscribeSigner(SECRET, BASE)
    assert SECRET.decode() not in repr(signer)
    assert BASE in repr(signer)


def test_campaign_id_with_nul_is_refused() -> None:
    with pytest.raises(ValidationError):
        UnsubscribeSigner(SECRET, BASE).url_for("a\x00b", "ada@example.com")


# -- compile once ------------------------------------------------------------------------------


def test_render_many_recipients_without_recompiling(monkeypatch: pytest.MonkeyPatch) -> None:
    signer = UnsubscribeSigner(SECRET, BASE)
    compiled = Template(
        subject="Hi {first_name}",
        text="Hello {{ first_name }}, unsubscribe: {{ unsubscribe_url }}",
        html="<p>{{ first_name }}</p>",
    ).compile(unsubscribe=signer)
    assert isinstance(compiled, CompiledTemplate)
    calls = {"compile": 0, "environment": 0}
    original_compile = jinja2.Environment.compile
    original_init = jinja2.Environment.__init__

    def counting_compile(self: jinja2.Environment, *args: object, **kwargs: object) -> object:
        calls["compile"] += 1
        return original_compile(self, *args, **kwargs)  # type: ignore[call-overload]

    def counting_init(self: jinja2.Environment, *args: object, **kwargs: object) -> None:
        calls["environment"] += 1
        original_init(self, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(jinja2.Environment, "compile", counting_compile)
    monkeypatch.setattr(jinja2.Environment, "__init__", counting_init)
    internals = (compiled._subject, compiled._text, compiled._html)
    seen = set()
    for i in range(10_000):
        content = compiled.render(
            {"first_name": f"User{i}"}, recipient=f"user{i}@example.com", campaign_id="big"
        )
        assert content.subject == f"Hi User{i}"
        seen.add(content.list_unsubscribe_url)
    assert calls == {"compile": 0, "environment": 0}
    assert (compiled._subject, compiled._text, compiled._html) == internals
    assert len(seen) == 10_000


def test_compiling_twice_shares_the_environments() -> None:
    template = Template(subject="s", text="{{ x | upper }}")
    first, second = template.compile(), template.compile()
    assert first._text is not None and second._text is not None
    assert first._text.jinja.environment is second._text.jinja.environment
    assert first._text is not second._text


# -- Plain substitution: the same output as Jinja, without a Jinja context ---------------------


class _Shown:
    def __str__(self) -> str:
        return "<shown & told>"


class _Html:
    def __html__(self) -> str:
        return "<i>own markup</i>"

    def __str__(self) -> str:
        return "plain"


SUBSTITUTION_SOURCES = [
    "no variables at all, 100% literal: %s %(name)s {{ '{{' }}",
    "{{ v }}",
    "{{ v }}{{ v }} and {{ w }}",
    "100% sure, {{ v }}: 50%% off %s\n",
    "lines\r\nwith CRLF {{ v }}\r\nand a trailing newline\n\n",
    "<p title='{{ v }}'>{{ w }}</p>",
    "{{v}}|{{\tw\n}}|{{\u00a0v }} and old Mac\rlines }} } {",
]
SUBSTITUTION_VALUES = [
    ("Ada", "Lovelace"),
    ("<script>&'\"</script>", "a%sb%(v)sc%%"),
    (42, 3.5),
    (None, True),
    (markupsafe.Markup("<b>safe</b>"), _Html()),
    (_Shown(), ["list", "<x>"]),
    ("", "ünïcödé ✓"),
]


@pytest.mark.parametrize("source", SUBSTITUTION_SOURCES)
@pytest.mark.parametrize("values", SUBSTITUTION_VALUES)
def test_plain_substitution_renders_what_jinja_renders(
    source: str, values: tuple[object, object]
) -> None:
    variables = {"v": values[0], "w": values[1]}
    compiled = Template(subject="s", text=source, html=source).compile()
    assert compiled._text is not None and compiled._html is not None
    if "{{ '{{' }}" not in source:  # a constant is Jinja's to render
        assert compiled._text.substitution is not None and compiled._html.substitution is not None
    content = compiled.render(variables)
    options = {"undefined": jinja2.StrictUndefined, "keep_trailing_newline": True}
    for autoescape, rendered in ((False, content.text), (True, content.html)):
        reference = ImmutableSandboxedEnvironment(autoescape=autoescape, **options)
        assert rendered == reference.from_string(source).render(variables)


@pytest.mark.parametrize("part", ["subject", "text", "html"])
def test_plain_substitution_reports_a_missing_variable_as_jinja_does(part: str) -> None:
    plain = {"subject": "s", "text": "t", "html": "h", part: "Hi {{ name }}"}
    jinja = {**plain, part: "Hi {{ name | string }}"}
    errors = []
    for sources in (plain, jinja):
        with pytest.raises(TemplateError) as info:
            Template(**sources).compile().render({"other": 1}, recipient="ada@example.com")
        errors.append(info.value)
    assert str(errors[0]) == str(errors[1])
    assert all(isinstance(e.__cause__, jinja2.UndefinedError) for e in errors)
    assert [(e.part, e.variable, e.recipient) for e in errors] == [
        (part, "name", "ada@example.com")
    ] * 2


@pytest.mark.parametrize(
    "source",
    [
        "{% if v %}{{ v }}{% endif %}",
        "{{ v.x }}",
        "{{ v | upper }}",
        "{{ loop }}",
        "{% set v = 1 %}",
    ],
)
def test_templates_with_more_than_substitution_are_rendered_by_jinja(source: str) -> None:
    compiled = Template(subject="s", text=source).compile()
    assert compiled._text is not None and compiled._text.substitution is None


def test_plain_substitution_is_recognised_without_importing_jinja() -> None:
    code = """
import sys
from xcomm import Template
content = Template(subject="Hi {{ name }}", text="Dear {name},", html="<p>{{ name }}</p>")
html = content.compile().render({"name": "<Ada>"}).html
print(html, sorted(m for m in sys.modules if m.startswith(("jinja2", "markupsafe"))))
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "<p>&lt;Ada&gt;</p> []"


def test_names_left_to_jinja_include_its_globals() -> None:
    assert set(jinja2.defaults.DEFAULT_NAMESPACE) <= _NOT_PLAIN
    assert {"true", "None", "not", "loop", "match"} <= _NOT_PLAIN


# Pieces Jinja reads differently: whitespace control, constants, globals, keywords, stray
# braces, comments and statements, line endings, characters that matter to %-formatting.
_PIECES = [
    "a", " ", "%", "%s", "{", "}", "{{", "}}", "{{{", "{{ v }}", "{{v}}", "{{ w\t}}",
    "{{\nv\r\n}}", "{{- v }}", "{{ v -}}", "{{ none }}", "{{ range }}", "{{ not }}",
    "{{ in }}", "{# c #}", "{% if v %}", "{% endif %}", "\r\n", "\r", "\n", "<&>'\"", "é",
]  # fmt: skip


@settings(max_examples=300, deadline=None)
@given(st.lists(st.sampled_from(_PIECES), min_size=1, max_size=12).map("".join))
def test_any_source_renders_what_jinja_renders(source: str) -> None:
    variables = {"v": "<b>&'\"%s", "w": 7}
    options = {"undefined": jinja2.StrictUndefined, "keep_trailing_newline": True}
    references = []
    for autoescape in (False, True):
        env = ImmutableSandboxedEnvironment(autoescape=autoescape, **options)
        try:
            references.append(env.from_string(source).render(variables))
        except jinja2.TemplateSyntaxError:
            with pytest.raises(TemplateError, match="syntax error"):
                Template(subject="s", text=source, html=source).compile()
            return
        except jinja2.UndefinedError:  # {{ in }}: a name, and not given
            with pytest.raises(TemplateError, match="is missing"):
                Template(subject="s", text=source, html=source).compile().render(variables)
            return
    content = Template(subject="s", text=source, html=source).compile().render(variables)
    assert [content.text, content.html] == references


class _Broken:
    def __str__(self) -> str:
        raise KeyError("boom")

    def __html__(self) -> str:
        raise KeyError("boom")


@pytest.mark.parametrize("part", ["text", "html"])
def test_plain_substitution_reports_a_failing_value_as_jinja_does(part: str) -> None:
    plain = {"subject": "s", "text": "t", part: "Hi {{ v }}"}
    jinja = {**plain, part: "Hi {{ v | string }}" if part == "text" else "Hi {{ v | e }}"}
    errors = []
    for sources in (plain, jinja):
        with pytest.raises(TemplateError) as info:
            Template(**sources).compile().render({"v": _Broken()}, recipient="ada@example.com")
        errors.append(info.value)
    assert str(errors[0]) == str(errors[1]) == f"the {part} template failed: KeyError: 'boom'"
    assert errors[0].variable is None and errors[0].part == part
