"""Email provider settings as a TOML file writes them: `kind = "smtp"` and the factory's settings.

`KINDS` lists the provider kinds a file may name. Each is built by the `CommManager` method of
the same name (through `comm.email(kind, **settings)`); the entry says whether it sends and
which `EmailQuery.explain()` dialect it searches with. Adding a kind is one entry here.

The keys a section accepts are read from the factory's signature: every setting whose type a
TOML value can express (strings, numbers, booleans, file paths, arrays and tables of strings).
Secrets are refused: `password_env` names the environment variable that holds a password, and
AWS credentials come from the AWS chain. The campaign file's `[provider]` and the config
file's `[providers.NAME]` sections are both read by `read_provider`.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any, Literal

from xcomm._errors import ValidationError
from xcomm._manager import CommManager
from xcomm._toml_file import BOOL, INT, NUMBER, STR, Field, Reader
from xcomm._validation import parse_address

__all__ = ["KINDS", "ProviderKind", "read_provider", "settings_of"]


@dataclass(frozen=True)
class ProviderKind:
    """What a provider kind can do from the command line.

    Attributes:
        sends: it sends mail (`xcomm send`, campaigns).
        dialect: the `EmailQuery.explain()` dialect it searches with; None: it cannot search.
        required: settings a file must give beyond the factory's own required ones.
    """

    sends: bool = True
    dialect: Literal["imap", "gmail", "graph"] | None = None
    required: tuple[str, ...] = ()


#: Every kind a settings file may name, by its `comm.email()` name.
KINDS: dict[str, ProviderKind] = {
    "smtp": ProviderKind(),
    "ses": ProviderKind(),
    "gmail": ProviderKind(dialect="gmail", required=("credentials_path",)),
    "imap": ProviderKind(sends=False, dialect="imap"),
    "outlook": ProviderKind(dialect="graph"),
}

#: Settings that hold secrets: never written in a file.
_SECRETS = frozenset({"password", "oauth_token", "client_secret", "access_key_id",
                      "secret_access_key", "session_token"})  # fmt: skip
_AWS = frozenset({"access_key_id", "secret_access_key", "session_token"})
_POSITIVE_INT = replace(INT, positive=True)
_POSITIVE_NUMBER = replace(NUMBER, positive=True)
_PATH = replace(STR, what="a file path (a string)", path=True)
_STRINGS = Field((list,), "an array of strings", items=str)
_STRING_TABLE = Field((dict,), "a table of strings", items=str)


def _union(annotation: str) -> set[str]:
    """The members of a `A | B[C | D] | None` annotation, split at the top level only."""
    members, depth, start = set(), 0, 0
    for i, char in enumerate(annotation):
        depth += (char == "[") - (char == "]")
        if char == "|" and depth == 0:
            members.add(annotation[start:i].strip())
            start = i + 1
    members.add(annotation[start:].strip())
    return members


def _field(annotation: str) -> Field | None:
    """The `Field` of a setting annotated `annotation`; None when TOML cannot express it."""
    types = _union(annotation)
    if "float" in types:
        return _POSITIVE_NUMBER
    if "int" in types:
        return _POSITIVE_INT
    if "bool" in types:
        return BOOL
    if "str" in types:
        return _PATH if "os.PathLike[str]" in types else STR
    if "Sequence[str]" in types:
        return _STRINGS
    if "Mapping[str, str]" in types:
        return _STRING_TABLE
    return None


@functools.cache
def settings_of(kind: str) -> tuple[dict[str, Field], tuple[str, ...]]:
    """The keys a `kind` section accepts (with `kind` itself) and the ones it requires."""
    schema: dict[str, Field] = {"kind": STR}
    required = list(KINDS[kind].required)
    for name, parameter in inspect.signature(getattr(CommManager, kind)).parameters.items():
        if name == "self" or name in _SECRETS:
            continue
        field = _field(str(parameter.annotation))
        if field is not None:
            schema[name] = field
            if parameter.default is inspect.Parameter.empty:
                required.append(name)
    return schema, tuple(required)


def _why_secret(kind: str | None, key: str) -> str | None:
    if key not in _SECRETS:
        return None
    why = "a settings file must not hold secrets; "
    if key in _AWS:
        return why + "SES reads AWS credentials from the AWS chain (AWS_* variables, profile)"
    if kind in KINDS and f"{key}_env" in settings_of(kind)[0]:
        example = f"{kind.upper()}_{key.upper()}"
        return why + (
            f"set {key}_env to the NAME of an environment variable that holds it "
            f'({key}_env = "{example}")'
        )
    return why + "see docs/cli.md for where this kind's credentials come from"


def read_provider(
    toml: Reader,
    section: str,
    *,
    sending: bool = False,
    required: Sequence[str] = (),
    check_env: bool = True,
) -> tuple[str | None, dict[str, Any]]:
    """The kind and settings in `[section]` (for `comm.email(kind, **settings)`), every problem
    reported to `toml`; the kind is None when it is missing or unknown.

    Args:
        toml: the file being read.
        section: the section's dotted name.
        sending: only kinds that send are allowed.
        required: keys this file needs beyond the kind's own.
        check_env: report `*_env` settings naming variables that are not set.
    """
    kinds = [name for name, spec in KINDS.items() if spec.sends or not sending]
    toml.schema[section] = {"kind": STR}
    kind = toml.get(section, "kind", required=True)
    if kind is not None and kind not in kinds:
        toml.problem(
            section,
            "kind",
            f"[{section}] kind must be one of {', '.join(map(repr, kinds))}; got {kind!r}",
        )
        kind = None
    if kind is None:  # its keys are unknown; only secrets are certainly wrong
        toml.check_keys(section, lambda key: _why_secret(None, key), unknown=False)
        return None, {}
    schema, needed = settings_of(kind)
    toml.schema[section] = schema
    toml.check_keys(section, lambda key: _why_secret(kind, key))
    settings: dict[str, Any] = {}
    for key in schema:
        value = toml.get(section, key, required=key in needed or key in required)
        if value is not None and key != "kind":
            settings[key] = value
    for key in [k for k in settings if k.endswith("_env")]:
        if check_env and toml.env(section, key) is None:
            settings.pop(key)
    if "sender" in settings:
        try:
            parse_address(settings["sender"])
        except ValidationError as exc:
            toml.problem(section, "sender", f"[{section}] sender: {exc}")
    return kind, settings
