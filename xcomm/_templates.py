"""Campaign templates: Jinja2 in a sandbox, compiled once, rendered once per recipient.

`Template` is the immutable source (subject, text, html). `Template.compile()` parses and
compiles every part once, in a `jinja2.sandbox.ImmutableSandboxedEnvironment` with
`StrictUndefined` (a missing variable fails that recipient, never renders a blank), HTML
autoescaped and subject/text not. `CompiledTemplate.render()` is pure and does no compiling, so
a campaign can call it for millions of recipients: it builds the recipient's variables into one
dict and runs each part's compiled code on it (what `jinja2.Template.render()` does three times
over, copying Jinja's globals each time). A part that only puts variables between text
(`Hi {{ name }},` — every seed-style template) is rendered by string formatting instead, to
the same output: no Jinja context is built for it per recipient. Such a part is recognised
without Jinja's parser, so a template made only of them never imports Jinja (~25 ms of CPU at
a campaign's start, in each helper process).

Seed-style `{name}` placeholders keep working: a part without any Jinja markup (`{{`, `{%`,
`{#`) has its `{identifier}` / `{dotted.identifier}` placeholders turned into `{{ ... }}`; every
other brace (CSS `p { color: red }`) is left alone.

`UnsubscribeSigner` builds the per-recipient one-click unsubscribe URL (RFC 8058) carrying an
HMAC-signed token, and verifies tokens coming back.

Jinja2 is the `xcomm[templates]` extra; without it, `compile()` raises `ConfigurationError`.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import importlib.util
import keyword
import operator
import os
import re
from collections.abc import Callable, Mapping
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal
from urllib.parse import urlsplit

import msgspec

from xcomm._config import secret_from_env
from xcomm._errors import ConfigurationError, ValidationError

if TYPE_CHECKING:
    import jinja2
    from jinja2.sandbox import ImmutableSandboxedEnvironment

# Jinja2 (and its markupsafe) are imported when a template needs them, not with this module.
_HAVE_JINJA2 = importlib.util.find_spec("jinja2") is not None

__all__ = [
    "CompiledTemplate",
    "RenderedContent",
    "Template",
    "TemplateError",
    "UnsubscribeSigner",
]

Part = Literal["subject", "text", "html"]

_JINJA_MARKUP = ("{{", "{%", "{#")
# A plain substitution part, as Jinja's lexer reads one: text up to the next "{{", "{%" or
# "{#", which must open `{{ name }}` (whitespace as Jinja's \s); text normalised to "\n".
_MARKUP = re.compile(r"\{[{%#]")
_PLAIN_OUTPUT = re.compile(r"\{\{\s*([A-Za-z_][A-Za-z0-9_]*)\s*\}\}")
_NEWLINES = re.compile(r"\r\n?")
_SEED_PLACEHOLDER = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z_][A-Za-z0-9_]*)*)\}")
# NUL and everything str.splitlines() breaks on: a header value must stay one line.
_SUBJECT_BREAK = re.compile("[\x00\n\r\x0b\x0c\x1c\x1d\x1e\x85\u2028\u2029]")
_UNDEFINED_NAME = re.compile(r"^'([^']+)' is undefined$")
_MISSING_MEMBER = re.compile(r"has no (?:attribute|element) '?([^']*?)'?$")
_TOKEN = re.compile(r"([A-Za-z0-9_-]+)\.([A-Za-z0-9_-]{22})")
_MAX_TOKEN = 8192
_MAC_BYTES = 16  # 128 bits: 22 base64url characters
_MAC_CONTEXT = b"xcomm-unsubscribe-v1\x00"
_SEPARATOR = "\x00"
_LOCAL_HOSTS = frozenset({"localhost", "127.0.0.1", "::1"})
_MIN_SECRET = 16


class TemplateError(ValidationError):
    """A template that cannot compile, or cannot render for one recipient.

    The message says what to change; it never contains the recipient's address (see `recipient`).

    Attributes:
        part: which part failed: "subject", "text" or "html".
        variable: the missing variable (or attribute) when that is the cause.
        recipient: the recipient being rendered, when known.
        line: the template line of a syntax error.
    """

    def __init__(
        self,
        message: str,
        *,
        part: Part,
        variable: str | None = None,
        recipient: str | None = None,
        line: int | None = None,
    ) -> None:
        super().__init__(message)
        self.part = part
        self.variable = variable
        self.recipient = recipient
        self.line = line


class RenderedContent(msgspec.Struct, frozen=True, kw_only=True):
    """One recipient's rendered subject and bodies.

    Attributes:
        subject: a single line, surrounding whitespace stripped.
        text: the plain-text body, or None when the template has none.
        html: the HTML body, or None when the template has none.
        list_unsubscribe_url: the signed one-click unsubscribe URL for the List-Unsubscribe
            header, when the template was compiled with an `UnsubscribeSigner`.
    """

    subject: str
    text: str | None
    html: str | None
    list_unsubscribe_url: str | None = None


class Template(msgspec.Struct, frozen=True, kw_only=True):
    """The subject, text and HTML of a campaign message, as Jinja2 source.

    Example:
        ```python
        template = Template(subject="Hi {{ first_name }}", text="Hello {{ first_name }}!")
        content = template.compile().render({"first_name": "Ada"})
        assert content.subject == "Hi Ada"
        ```

    At least one of `text` and `html` is required. Seed-style `{first_name}` placeholders work
    in parts that contain no other Jinja markup. Compile once per campaign with `compile()`.

    Attributes:
        subject: the subject template (rendered to one line).
        text: the plain-text body template (not escaped).
        html: the HTML body template (every variable is HTML-escaped).
        name: an optional label for logs and reports.
    """

    subject: str
    text: str | None = None
    html: str | None = None
    name: str | None = None

    def __post_init__(self) -> None:
        for part in ("subject", "text", "html", "name"):
            value = getattr(self, part)
            if value is not None and not isinstance(value, str):
                hint = "; to read files use Template.from_files()" if part != "name" else ""
                raise ConfigurationError(
                    f"Template {part} must be a string, not {type(value).__name__}{hint}"
                )
        if not (self.text or self.html):
            raise ConfigurationError("a Template needs a text or an html body (or both)")

    @classmethod
    def from_files(
        cls,
        *,
        subject: str | os.PathLike[str],
        text: str | os.PathLike[str] | None = None,
        html: str | os.PathLike[str] | None = None,
        encoding: str = "utf-8",
        name: str | None = None,
    ) -> Template:
        """Read the template parts from files.

        `subject` is a literal template when it is a `str` and a file path when it is an
        `os.PathLike` (such as `pathlib.Path`). `text` and `html` are always paths.

        Args:
            subject: the subject template, or a path to a file holding it.
            text: path to the plain-text body template.
            html: path to the HTML body template.
            encoding: the files' encoding.
            name: a label; defaults to the file name (without suffix) of `html` or `text`.

        Raises:
            ConfigurationError: a file is missing or unreadable, or neither body is given.
        """
        if not isinstance(subject, str):
            subject = _read("subject", subject, encoding).strip()
        body = html if html is not None else text
        if name is None and body is not None:
            name = Path(body).stem
        return cls(
            subject=subject,
            text=None if text is None else _read("text", text, encoding),
            html=None if html is None else _read("html", html, encoding),
            name=name,
        )

    def compile(self, *, unsubscribe: UnsubscribeSigner | None = None) -> CompiledTemplate:
        """Parse and compile every part once.

        Args:
            unsubscribe: signs a per-recipient unsubscribe URL, exposed to the templates as
                `unsubscribe_url` and returned as `RenderedContent.list_unsubscribe_url`.

        Raises:
            TemplateError: a part has a syntax error (`part` and `line` say where).
            ConfigurationError: Jinja2 is not installed (`pip install 'xcomm[templates]'`).
        """
        return CompiledTemplate(self, unsubscribe=unsubscribe)


class CompiledTemplate:
    """A `Template` compiled once; `render()` runs per recipient and never recompiles.

    Attributes:
        template: the source template.
        unsubscribe: the unsubscribe signer, if any.
        variables: the names the template reads from the personalization data.
    """

    __slots__ = ("_globals", "_html", "_subject", "_text", "template", "unsubscribe", "variables")

    def __init__(self, template: Template, *, unsubscribe: UnsubscribeSigner | None = None) -> None:
        found: set[str] = set()
        self._subject = _compile("subject", template.subject, found)
        self._text = None if template.text is None else _compile("text", template.text, found)
        self._html = None if template.html is None else _compile("html", template.html, found)
        if unsubscribe is not None:
            found.discard("unsubscribe_url")
        # Jinja's globals (range, dict, lipsum, ...), flattened once from their ChainMap; the
        # recipient's variables go on top of them, as in `jinja2.Template.render()`.
        self._globals: dict[str, Any] = {}
        for part in (self._subject, self._text, self._html):
            if part is not None and part.jinja is not None:
                self._globals.update(part.jinja.globals)
        self.template = template
        self.unsubscribe = unsubscribe
        self.variables = frozenset(found)

    def __repr__(self) -> str:
        return f"CompiledTemplate(name={self.template.name!r}, variables={sorted(self.variables)})"

    def render(
        self,
        variables: Mapping[str, object],
        /,
        *,
        recipient: str | None = None,
        campaign_id: str | None = None,
    ) -> RenderedContent:
        """Render the subject and bodies for one recipient.

        Args:
            variables: the recipient's personalization data.
            recipient: the recipient's address (reported on errors; signs the unsubscribe URL).
            campaign_id: the campaign, needed with `recipient` for the unsubscribe URL.

        Raises:
            TemplateError: a variable is missing, the sandbox blocked an access, the template
                failed, or the rendered subject contains a line break or NUL.
        """
        # One context dict for the three parts: each part gets its own jinja2 Context over it
        # (so a `{% set %}` in one part stays there), none of them writes to it.
        context = {**self._globals, **variables}
        url = None
        if self.unsubscribe is not None and recipient is not None and campaign_id is not None:
            url = context["unsubscribe_url"] = self.unsubscribe.url_for(campaign_id, recipient)
        subject = self._subject.render(context, self._globals, recipient).strip()
        if _SUBJECT_BREAK.search(subject):
            raise TemplateError(
                "the rendered subject contains a line break or NUL; a subject must be one line: "
                "clean this recipient's personalization data",
                part="subject",
                recipient=recipient,
            )
        text = html = None
        if self._text is not None:
            text = self._text.render(context, self._globals, recipient)
        if self._html is not None:
            html = self._html.render(context, self._globals, recipient)
        return RenderedContent(subject=subject, text=text, html=html, list_unsubscribe_url=url)


class UnsubscribeSigner:
    """Signs and verifies one-click unsubscribe URLs (RFC 8058) per campaign and recipient.

    Example:
        ```python
        signer = UnsubscribeSigner(b"a-secret-of-16+bytes", "https://example.com/unsubscribe")
        url = signer.url_for("spring-sale", "ada@example.com")
        token = url.partition("token=")[2]
        assert signer.verify(token) == ("spring-sale", "ada@example.com")
        ```

    The token is `base64url(campaign_id NUL recipient) "." base64url(HMAC-SHA256)[:22]`, using
    only URL-safe characters; the recipient is lowercased. Anyone holding a URL can unsubscribe
    that one recipient from that one campaign's list, which is what one-click means.
    """

    __slots__ = ("_head", "_secret", "_tail", "base_url", "secret_env")

    def __init__(self, secret: bytes | str, base_url: str) -> None:
        self.secret_env: str | None = None
        key = secret.encode() if isinstance(secret, str) else bytes(secret)
        if len(key) < _MIN_SECRET:
            raise ConfigurationError(
                f"the unsubscribe secret must be at least {_MIN_SECRET} bytes; "
                "generate one with secrets.token_bytes(32)"
            )
        parts = urlsplit(base_url)
        local = parts.scheme == "http" and parts.hostname in _LOCAL_HOSTS
        if not parts.hostname or not (parts.scheme == "https" or local):
            raise ConfigurationError(
                f"unsubscribe base_url must be an https:// URL (http only for localhost), "
                f"got {base_url!r}"
            )
        self._secret = key
        self.base_url = base_url
        head, _, fragment = base_url.partition("#")
        joiner = "" if head.endswith(("?", "&")) else ("&" if parts.query else "?")
        self._head = f"{head}{joiner}token="
        self._tail = f"#{fragment}" if fragment else ""

    @classmethod
    def from_env(cls, name: str, base_url: str) -> UnsubscribeSigner:
        """A signer whose secret is the environment variable `name`.

        A campaign signed this way can be sent by any worker process: its definition keeps the
        variable's name (never the secret), and the worker reads the variable.
        """
        secret = secret_from_env(
            name,
            "the unsubscribe secret",
            hint="; set it to the campaign's secret (generate one with: python -c "
            "'import secrets; print(secrets.token_urlsafe(32))')",
        )
        signer = cls(secret, base_url)
        signer.secret_env = name
        return signer

    def __repr__(self) -> str:
        return f"UnsubscribeSigner(base_url={self.base_url!r})"

    def token(self, campaign_id: str, recipient: str) -> str:
        """The signed token for one recipient of one campaign."""
        if _SEPARATOR in campaign_id:
            raise ValidationError("a campaign id must not contain NUL characters")
        payload = f"{campaign_id}{_SEPARATOR}{recipient.strip().lower()}".encode()
        return f"{_b64(payload)}.{_b64(self._mac(payload))}"

    def url_for(self, campaign_id: str, recipient: str) -> str:
        """The unsubscribe URL for one recipient of one campaign."""
        return f"{self._head}{self.token(campaign_id, recipient)}{self._tail}"

    def verify(self, token: object) -> tuple[str, str] | None:
        """Return `(campaign_id, recipient)` for a genuine token, None for anything else."""
        if not isinstance(token, str) or len(token) > _MAX_TOKEN:
            return None
        match = _TOKEN.fullmatch(token)
        if match is None:
            return None
        encoded, signature = match.groups()
        try:
            payload = base64.urlsafe_b64decode(encoded + "=" * (-len(encoded) % 4))
        except ValueError:
            return None
        if _b64(payload) != encoded:  # non-canonical encodings are not ours
            return None
        if not hmac.compare_digest(_b64(self._mac(payload)), signature):
            return None
        campaign_id, _, recipient = payload.decode(errors="replace").partition(_SEPARATOR)
        return campaign_id, recipient

    def _mac(self, payload: bytes) -> bytes:
        digest = hmac.new(self._secret, _MAC_CONTEXT + payload, hashlib.sha256).digest()
        return digest[:_MAC_BYTES]


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _read(part: Part, path: str | os.PathLike[str], encoding: str) -> str:
    try:
        return Path(path).read_text(encoding=encoding)
    except (OSError, UnicodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        raise ConfigurationError(
            f"cannot read the {part} template {os.fspath(path)!r}: {reason}"
        ) from exc


@cache
def _environments() -> tuple[ImmutableSandboxedEnvironment, ImmutableSandboxedEnvironment]:
    """The two shared sandboxes (plain, HTML-escaping); built once per process."""
    import jinja2
    from jinja2.sandbox import ImmutableSandboxedEnvironment

    options: dict[str, Any] = {"undefined": jinja2.StrictUndefined, "keep_trailing_newline": True}
    return (
        ImmutableSandboxedEnvironment(autoescape=False, **options),
        ImmutableSandboxedEnvironment(autoescape=True, **options),
    )


def _seed_to_jinja(source: str) -> str:
    """Turn `{name}` placeholders into `{{ name }}` when the source has no Jinja markup."""
    if any(mark in source for mark in _JINJA_MARKUP):
        return source
    return _SEED_PLACEHOLDER.sub(r"{{ \1 }}", source)


def _compile(part: Part, source: str, found: set[str]) -> _Part:
    if not _HAVE_JINJA2:  # pragma: no cover - exercised only without the extra
        raise ConfigurationError("templates need Jinja2: pip install 'xcomm[templates]'")
    html = part == "html"
    source = _seed_to_jinja(source)
    if (plain := _plain_substitution(source, html=html)) is not None:
        found.update(plain.names)
        return _Part(part, None, plain)
    import jinja2
    from jinja2 import meta

    env = _environments()[html]
    try:
        tree = env.parse(source, name=part)
        found.update(meta.find_undeclared_variables(tree))
        compiled: jinja2.Template = env.from_string(tree)
    except jinja2.TemplateSyntaxError as exc:
        raise TemplateError(
            f"the {part} template has a syntax error on line {exc.lineno}: {exc.message}",
            part=part,
            line=exc.lineno,
        ) from exc
    return _Part(part, compiled, _substitution(tree, html=html))


# Names Jinja resolves by itself rather than from the context.
_SPECIAL_NAMES = frozenset({"self", "loop", "caller", "varargs", "kwargs", "super"})
# Names a `{{ name }}` part is not recognised with, without Jinja: those above, Jinja's
# globals (jinja2.defaults.DEFAULT_NAMESPACE), its constants and operators, Python's keywords.
# Jinja's own parser decides what a part using one of them is.
_NOT_PLAIN = _SPECIAL_NAMES | frozenset(
    {"range", "dict", "lipsum", "cycler", "joiner", "namespace"}
    | {"true", "false", "none", "and", "or", "not", "in", "is", "if", "else"}
    | set(keyword.kwlist)
    | set(keyword.softkwlist)
)


class _Substitution:
    """A part that is only text and `{{ name }}` outputs, as a format string: each value is
    output as Jinja's code outputs it (its `str()`, or its HTML escape in an HTML part)."""

    __slots__ = ("_format", "_html", "_values", "names")

    def __init__(self, texts: list[str], names: list[str], *, html: bool) -> None:
        self._format = "%s".join(text.replace("%", "%%") for text in texts)
        self.names = tuple(dict.fromkeys(names))  # each escaped once
        self._html = html
        get = operator.itemgetter(*names) if names else (lambda _: ())
        self._values: Callable[[Mapping[str, Any]], tuple[Any, ...]] = (
            get if len(names) != 1 else lambda context: (get(context),)
        )

    def render(self, context: dict[str, Any]) -> str:
        """The part with `context`'s values in place. KeyError: a variable it does not hold
        (or a value's own failure)."""
        if self._html:
            context = {name: _escape(context[name]) for name in self.names}
        text: str = self._format % self._values(context)
        return text


def _plain_substitution(source: str, *, html: bool) -> _Substitution | None:
    """The part as a `_Substitution` when it is only text and `{{ name }}` outputs, as Jinja's
    lexer reads them; None when Jinja has to parse it."""
    texts, names, at = [], [], 0
    while (mark := _MARKUP.search(source, at)) is not None:
        output = _PLAIN_OUTPUT.match(source, mark.start())
        if output is None or output.group(1) in _NOT_PLAIN:
            return None
        texts.append(_NEWLINES.sub("\n", source[at : mark.start()]))
        names.append(output.group(1))
        at = output.end()
    texts.append(_NEWLINES.sub("\n", source[at:]))
    return _Substitution(texts, names, html=html)


def _substitution(tree: jinja2.nodes.Template, *, html: bool) -> _Substitution | None:
    """The part as a `_Substitution`, when it is only text and plain variables."""
    from jinja2 import nodes

    texts, names = [""], []
    for node in tree.body:
        if not isinstance(node, nodes.Output):
            return None
        for child in node.nodes:
            if isinstance(child, nodes.TemplateData):
                texts[-1] += child.data
            elif (
                isinstance(child, nodes.Name)
                and child.ctx == "load"
                and child.name not in _SPECIAL_NAMES
            ):
                names.append(child.name)
                texts.append("")
            else:
                return None
    return _Substitution(texts, names, html=html)


def _escape(value: object) -> str:
    """`markupsafe.escape(value)` as a plain str; a plain str is escaped without building a
    `Markup` (the same five replacements)."""
    if type(value) is str:
        return (
            value.replace("&", "&amp;")
            .replace(">", "&gt;")
            .replace("<", "&lt;")
            .replace("'", "&#39;")
            .replace('"', "&#34;")
        )
    import markupsafe

    return str(markupsafe.escape(value))


class _Part:
    """One compiled part: Jinja's code for it (None when it was not needed), and its
    `_Substitution` when it has one."""

    __slots__ = ("jinja", "name", "substitution")

    def __init__(
        self, name: Part, jinja: jinja2.Template | None, substitution: _Substitution | None
    ) -> None:
        self.name, self.jinja, self.substitution = name, jinja, substitution

    def render(
        self, context: dict[str, Any], globals_: dict[str, Any], recipient: str | None
    ) -> str:
        """The part rendered with `context` (which holds the globals under the variables)."""
        substitution = self.substitution
        if substitution is None:
            assert self.jinja is not None
            return _render(self.jinja, self.name, context, globals_, recipient)
        try:
            return substitution.render(context)
        except Exception as exc:
            name = exc.args[0] if isinstance(exc, KeyError) and exc.args else None
            if name in substitution.names and name not in context:  # as StrictUndefined says
                import jinja2

                undefined = jinja2.UndefinedError(f"'{name}' is undefined")
                raise _missing(self.name, str(undefined), recipient) from undefined
            # a value's __str__ or __html__ failed: as `_render` reports it
            message = f"the {self.name} template failed: {type(exc).__name__}: {exc}"
            raise TemplateError(message, part=self.name, recipient=recipient) from exc


def _render(
    compiled: jinja2.Template,
    part: Part,
    context: dict[str, Any],
    globals_: dict[str, Any],
    recipient: str | None,
) -> str:
    """`compiled.render(context)` without copying `context` and the globals into a new dict.

    `context` already holds the globals under the variables; the sandbox, autoescaping and
    `StrictUndefined` live in the compiled code and its environment, so they apply unchanged.
    """
    from jinja2 import UndefinedError
    from jinja2.exceptions import SecurityError

    env = compiled.environment
    try:
        ctx = env.context_class(env, context, compiled.name, compiled.blocks, globals=globals_)
        try:
            return env.concat(compiled.root_render_func(ctx))
        except Exception:
            env.handle_exception()  # re-raises with the traceback pointing at template lines
    except SecurityError as exc:
        message = f"the {part} template tried something the sandbox forbids: {exc}"
        raise TemplateError(message, part=part, recipient=recipient) from exc
    except UndefinedError as exc:
        raise _missing(part, str(exc), recipient) from exc
    except Exception as exc:
        message = f"the {part} template failed: {type(exc).__name__}: {exc}"
        raise TemplateError(message, part=part, recipient=recipient) from exc


def _missing(part: Part, detail: str, recipient: str | None) -> TemplateError:
    """Turn Jinja's "'x' is undefined" / "... has no attribute 'x'" into a fix-it message."""
    if top := _UNDEFINED_NAME.match(detail):
        name = top.group(1)
        what, fix = f"{name!r} is missing", f"use {{{{ {name} | default('there') }}}}"
    elif member := _MISSING_MEMBER.search(detail):
        name = member.group(1)
        what, fix = detail, "give it a default with | default(...)"
    else:
        return TemplateError(
            f"the {part} template failed: {detail}", part=part, recipient=recipient
        )
    return TemplateError(
        f"the {part} template failed, {what}: add {name!r} to this recipient's "
        f"personalization data, or {fix}",
        part=part,
        variable=name,
        recipient=recipient,
    )
