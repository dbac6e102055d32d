"""The provider config file of `xcomm send` and `xcomm search` (`xcomm.toml`).

```toml
[providers.work]
kind = "smtp"
host = "smtp.example.com"
username = "me@example.com"
password_env = "SMTP_PASSWORD"   # the NAME of an environment variable, never the password
sender = "Me <me@example.com>"

[providers.inbox]
kind = "imap"
host = "imap.example.com"
username = "me@example.com"
password_env = "IMAP_PASSWORD"
```

`--provider NAME` picks a section. `load_provider(path, name)` checks the whole file and
raises `ConfigFileError` with every problem as `file:line: what is wrong` (the keys of each
kind are `xcomm._provider_settings`'s); an environment variable is checked only for the
provider picked. The file is `--config FILE`, else `$XCOMM_CONFIG`, else `./xcomm.toml`.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from xcomm._errors import ConfigurationError
from xcomm._provider_settings import read_provider
from xcomm._toml_file import Lines, Problem, Reader, Report, SettingsFileError, read_toml

__all__ = [
    "CONFIG_ENV",
    "DEFAULT_CONFIG",
    "ConfigFileError",
    "ProviderSettings",
    "UnknownProvider",
    "config_path",
    "load_provider",
]

CONFIG_ENV = "XCOMM_CONFIG"
DEFAULT_CONFIG = "xcomm.toml"
_NAME = re.compile(r"[A-Za-z0-9_-]+")


class ConfigFileError(SettingsFileError):
    """The config file is missing or wrong; `problems` lists each with its file and line."""


class UnknownProvider(ConfigurationError):
    """`--provider NAME` names no section of the config file; `names` are the ones it has."""

    def __init__(self, message: str, *, names: tuple[str, ...]) -> None:
        super().__init__(message)
        self.names = names


@dataclass(frozen=True)
class ProviderSettings:
    """One checked `[providers.NAME]` section: `comm.email(kind, **settings)` builds it.

    Attributes:
        name: the section's name (what `--provider` gives).
        kind: "smtp", "imap", "gmail", ...
        settings: the factory's settings (`password_env` names a variable, never a secret;
            paths are absolute).
        kinds: the kind of every provider in the file, by name (for messages).
    """

    name: str
    kind: str
    settings: dict[str, Any]
    kinds: dict[str, str]


def config_path(given: str | None = None) -> Path:
    """The config file: `given`, else `$XCOMM_CONFIG`, else `./xcomm.toml`."""
    return Path(given or os.environ.get(CONFIG_ENV) or DEFAULT_CONFIG)


def load_provider(path: Path, name: str) -> ProviderSettings:
    """Check the config file at `path` and return its provider `name`.

    Raises:
        ConfigFileError: the file is missing, or wrong (every problem, with its line).
        UnknownProvider: no `[providers.NAME]` section; the message lists the names there are.
    """
    if not path.is_file():
        where = "" if path.exists() else ": no such file"
        raise ConfigFileError([Problem(str(path), None, (
            f"cannot read the config file{where}; write one with a [providers.NAME] section "
            f"(see docs/cli.md), or give its path with --config FILE or ${CONFIG_ENV}"
        ))])  # fmt: skip
    text, data = read_toml(path, "the config file", ConfigFileError)
    report = Report()
    toml = Reader(str(path), data, Lines(text), report, {}, base=path.parent)
    toml.check_sections(["providers"])
    providers = toml.table("providers")
    if not providers:
        toml.problem(
            "providers", None, 'no providers: add a [providers.NAME] section with kind = "..."'
        )
    kinds: dict[str, str] = {}
    found: dict[str, Any] = {}
    for section_name, section in providers.items():
        where = f"providers.{section_name}"
        if not isinstance(section, dict):
            toml.problem("providers", section_name, f"[{where}] must be a table of settings")
            continue
        if not _NAME.fullmatch(section_name):
            toml.problem(
                where, None, f"[{where}]: use letters, digits, '-' and '_' in provider names"
            )
        kind, settings = read_provider(toml, where, check_env=section_name == name)
        if kind is not None:
            kinds[section_name] = kind
            found[section_name] = settings
    report.raise_if_any(ConfigFileError)
    if name not in found:
        names = tuple(providers)
        listed = ", ".join(f"{n} ({kinds[n]})" for n in names)
        raise UnknownProvider(f"no provider {name!r} in {path}; it has: {listed}", names=names)
    return ProviderSettings(name=name, kind=kinds[name], settings=found[name], kinds=kinds)
