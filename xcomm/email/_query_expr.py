"""The query expression language: `EmailQuery.parse("from:bob is:unread")`, and back again.

Gmail-like: terms are `field:value` or bare text, side by side they are ANDed, `OR` joins
alternatives and binds tighter than the implicit AND (as in Gmail: `a b OR c` is
`a AND (b OR c)`), `-term` or `NOT term` negates, parentheses group.

```
query  := [and]                   (empty: every message)
and    := or ([AND] or)*
or     := unary (OR unary)*
unary  := ("-" | NOT) unary | "(" [and] ")" | term
term   := field ":" value | value   (a bare value is text(): headers or body)
value  := characters other than spaces and ( ) ", with "quoted strings" anywhere in it
          (inside quotes, \\ and \" are a backslash and a quote)
```

`OR`, `AND` and `NOT` are operators only in capitals and unquoted; a quoted term is always
text. The fields and what they mean are in `xcomm.email._query_terms`. Parsing and rendering
are pure; every error is a `QuerySyntaxError` naming the column.
"""

from __future__ import annotations

import difflib
import re
from dataclasses import dataclass
from datetime import date

from xcomm._errors import QuerySyntaxError, ValidationError
from xcomm.email import _query_ast as ast
from xcomm.email._query_terms import FIELDS, OPERATORS, UNREAD, render_leaf

__all__ = ["parse_expression", "render_expression"]

_FIELD = re.compile(r"([A-Za-z][A-Za-z0-9_]*):")


@dataclass(frozen=True, slots=True)
class _Token:
    kind: str  # "(", ")", "-", "OR", "AND", "NOT" or "term"
    column: int
    value: str = ""
    field: str | None = None
    quoted: bool = False


class _Error(Exception):
    """A problem at `column`: the parser turns it into a QuerySyntaxError."""

    def __init__(self, message: str, column: int) -> None:
        super().__init__(message)
        self.message = message
        self.column = column


# ---- lexing ----------------------------------------------------------------------------------


def _tokens(text: str) -> list[_Token]:
    tokens: list[_Token] = []
    i, n = 0, len(text)
    while i < n:
        char = text[i]
        if char.isspace():
            i += 1
        elif char in "()":
            tokens.append(_Token(char, i + 1))
            i += 1
        elif char == "-":
            if i + 1 == n or text[i + 1].isspace() or text[i + 1] == ")":
                raise _Error(
                    f"'-' at column {i + 1} must come right before a term (-is:read)", i + 1
                )
            tokens.append(_Token("-", i + 1))
            i += 1
        else:
            token, i = _term(text, i)
            tokens.append(token)
    return tokens


def _term(text: str, start: int) -> tuple[_Token, int]:
    field = None
    i = start
    if match := _FIELD.match(text, start):
        field = match.group(1).lower()
        i = match.end()
    parts: list[str] = []
    quoted = False
    while i < len(text) and not text[i].isspace() and text[i] not in "()":
        if text[i] == '"':
            part, i = _quoted(text, i)
            parts.append(part)
            quoted = True
        else:
            parts.append(text[i])
            i += 1
    value = "".join(parts)
    if field is None and not quoted and value in OPERATORS:
        return _Token(value, start + 1), i
    return _Token("term", start + 1, value, field, quoted), i


def _quoted(text: str, start: int) -> tuple[str, int]:
    out: list[str] = []
    i = start + 1
    while i < len(text):
        char = text[i]
        if char == "\\":
            if i + 1 == len(text):
                break
            out.append(text[i + 1])
            i += 2
        elif char == '"':
            return "".join(out), i + 1
        else:
            out.append(char)
            i += 1
    raise _Error(
        f'the quote at column {start + 1} is never closed; expected a closing "', start + 1
    )


# ---- parsing ---------------------------------------------------------------------------------


def parse_expression(text: str, *, today: date) -> ast.Node:
    """The condition tree of the expression `text`; `today` anchors `newer_than:`/`older_than:`.

    Raises:
        QuerySyntaxError: with the column and what was expected.
    """
    if not isinstance(text, str):
        raise ValidationError(f"EmailQuery.parse() takes a str, not {type(text).__name__}")
    try:
        parser = _Parser(_tokens(text), today, len(text))
        node = parser.conjunction()
        if (extra := parser.peek()) is not None:  # only a stray ")" stops a conjunction
            raise _Error(f"unexpected ')' at column {extra.column}: no '(' opens it", extra.column)
    except _Error as exc:
        raise QuerySyntaxError(exc.message, expression=text, column=exc.column) from None
    return node


class _Parser:
    def __init__(self, tokens: list[_Token], today: date, length: int) -> None:
        self.tokens = tokens
        self.at = 0
        self.today = today
        self.end = length + 1

    def peek(self) -> _Token | None:
        return self.tokens[self.at] if self.at < len(self.tokens) else None

    def take(self) -> _Token:
        token = self.tokens[self.at]
        self.at += 1
        return token

    def starts_term(self) -> bool:
        token = self.peek()
        return token is not None and token.kind in ("term", "(", "-", "NOT")

    def operand(self, after: _Token) -> None:
        """Raise unless a term follows the operator `after`."""
        if not self.starts_term():
            token = self.peek()
            where = self.end if token is None else token.column
            name = "'-'" if after.kind == "-" else after.kind
            raise _Error(f"{name} at column {after.column} needs a term after it", where)

    def conjunction(self) -> ast.Node:
        items: list[ast.Node] = []
        while (token := self.peek()) is not None and token.kind != ")":
            if token.kind == "AND":
                if not items:
                    raise _Error(
                        f"AND at column {token.column} needs a term before it", token.column
                    )
                self.operand(self.take())
            items.append(self.disjunction())
        return ast.and_(*items) if items else ast.TRUE

    def disjunction(self) -> ast.Node:
        items = [self.unary()]
        while (token := self.peek()) is not None and token.kind == "OR":
            self.operand(self.take())
            items.append(self.unary())
        return ast.or_(*items)

    def unary(self) -> ast.Node:
        token = self.take()
        if token.kind in ("-", "NOT"):
            self.operand(token)
            return ast.not_(self.unary())
        if token.kind == "(":
            inner = self.conjunction()
            closing = self.peek()
            if closing is None:
                message = f"the '(' at column {token.column} is never closed; expected ')'"
                raise _Error(f"{message} at column {self.end}", self.end)
            self.take()
            return inner
        if token.kind == "term":
            return self.term(token)
        if token.kind == ")":
            raise _Error(f"unexpected ')' at column {token.column}: no '(' opens it", token.column)
        raise _Error(f"{token.kind} at column {token.column} needs a term before it", token.column)

    def term(self, token: _Token) -> ast.Node:
        if token.field is None:
            if not token.value:
                message = f"empty quotes at column {token.column}"
                raise _Error(f"{message}: put the text to search for between them", token.column)
            try:
                return ast.Text(ast.check_text("a term", token.value))
            except ValidationError as exc:
                raise _Error(f"at column {token.column}: {exc}", token.column) from None
        make = FIELDS.get(token.field)
        if make is None:
            close = difflib.get_close_matches(token.field, list(FIELDS), n=1)
            hint = (
                f"did you mean {close[0]!r}?"
                if close
                else f"use one of {', '.join(FIELDS)}, or quote the term to search for the text"
            )
            raise _Error(
                f"unknown field {token.field!r} at column {token.column}; {hint}", token.column
            )
        if not token.value and not token.quoted:
            at = token.column + len(token.field) + 1
            raise _Error(
                f"expected a value after '{token.field}:' at column {token.column} (no space "
                "after the colon; quote values with spaces)",
                at,
            )
        try:
            return make(token.value, self.today)
        except ValidationError as exc:
            at = token.column + len(token.field) + 1
            raise _Error(f"bad value for '{token.field}:' at column {at}: {exc}", at) from None


# ---- rendering -------------------------------------------------------------------------------


def render_expression(node: ast.Node) -> str:
    """The expression that parses back to `node` (dates as ISO days, sizes as 1536 or 2M).

    Raises:
        ValidationError: a header name containing `=`, which `header:` cannot write.
    """
    return _render(node, top=True)


def _render(node: ast.Node, *, top: bool) -> str:
    if isinstance(node, ast.And):
        text = " ".join(_render(item, top=False) for item in node.items)
        return text if top else f"({text})"
    if isinstance(node, ast.Or):
        if not node.items:
            return "-()"
        text = " OR ".join(_render(item, top=False) for item in node.items)
        return text if top else f"({text})"
    if isinstance(node, ast.Not):
        if node == UNREAD:
            return "is:unread"
        return "-" + _render(node.item, top=False)
    return render_leaf(node)
