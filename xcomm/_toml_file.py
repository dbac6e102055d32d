"""Reading a TOML settings file, with every problem reported as `file:line: what is wrong`.

tomllib does not say where a key is, so `Lines` finds each `[section]` and `key =` in the
text; a `Reader` checks values against a schema of `Field`s and files each problem, with its
line, in a `Report`, which raises them all at once. The campaign file (`_campaign_file`) and
the provider config file of `xcomm send`/`search` (`_config_file`) are read with it.
"""

from __future__ import annotations

import difflib
import os
import re
import tomllib
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from xcomm._errors import ConfigurationError

__all__ = [
    "BOOL",
    "INT",
    "MAX_PROBLEMS",
    "NUMBER",
    "STR",
    "Field",
    "Lines",
    "Problem",
    "Reader",
    "Report",
    "SettingsFileError",
    "read_toml",
    "suggest",
]

#: Problems reported at most; the rest are counted.
MAX_PROBLEMS = 20

_TOML_AT = re.compile(r"\s*\(at line (\d+), column (\d+)\)$")
_HEADER = re.compile(r"\s*\[(?!\[)\s*([^\]]+?)\s*\]")
_KEY = re.compile(r"\s*([A-Za-z0-9_-]+|\"[^\"]*\"|'[^']*')\s*=")


@dataclass(frozen=True)
class Field:
    """What a key accepts: `types`, described as `what` in messages.

    `positive`: a number above 0; `choices`: the only strings allowed; `items`: the type of
    each item of an array or table; `path`: a file path, `~` expanded and a relative path
    taken from the file's folder.
    """

    types: tuple[type, ...]
    what: str
    positive: bool = False
    choices: tuple[str, ...] = ()
    items: type | None = None
    path: bool = False


STR = Field((str,), "a string")
INT = Field((int,), "a whole number")
NUMBER = Field((int, float), "a number")
BOOL = Field((bool,), "true or false")


@dataclass(frozen=True)
class Problem:
    """One thing wrong with the input, and where: `str()` is `file:line: message`."""

    file: str
    line: int | None
    message: str

    def __str__(self) -> str:
        where = self.file if self.line is None else f"{self.file}:{self.line}"
        return f"{where}: {self.message}"


class SettingsFileError(ConfigurationError):
    """A settings file is wrong; `problems` lists each with its file and line.

    Nothing has been sent when this is raised.
    """

    def __init__(self, problems: list[Problem], *, more: int = 0) -> None:
        self.problems = tuple(problems)
        self.more = more
        lines = [str(p) for p in problems]
        if more:
            lines.append(f"... and {more:,} more problems not shown")
        super().__init__("\n".join(lines))


class Report:
    """Problems collected so far; counts (without keeping) those past `MAX_PROBLEMS`.

    `report(file, line, message)` files one.
    """

    def __init__(self) -> None:
        self.problems: list[Problem] = []
        self.more = 0

    def __call__(self, file: str, line: int | None, message: str) -> None:
        if len(self.problems) < MAX_PROBLEMS:
            self.problems.append(Problem(file, line, message))
        else:
            self.more += 1

    def __bool__(self) -> bool:
        return bool(self.problems)

    def raise_if_any(self, error: type[SettingsFileError]) -> None:
        """Raise them as `error`, file by file (in the order the files were met) and by line."""
        if self.problems:
            order = {file: n for n, file in enumerate(dict.fromkeys(p.file for p in self.problems))}
            problems = sorted(self.problems, key=lambda p: (order[p.file], p.line or 0))
            raise error(problems, more=self.more)


def _section(header: str) -> str:
    """`providers . "work"` as `providers.work`."""
    return ".".join(part.strip().strip("\"'") for part in header.split("."))


class Lines:
    """Where each `[section]` and `key =` sits in the TOML text (tomllib does not say)."""

    def __init__(self, text: str) -> None:
        self.sections: dict[str, int] = {}
        self.keys: dict[tuple[str, str], int] = {}
        self.multiline: set[tuple[str, str]] = set()  # values opening with `"""` + newline
        section, closing = "", ""
        for number, line in enumerate(text.splitlines(), 1):
            if closing:
                if closing in line:
                    closing = ""
                continue
            if header := _HEADER.match(line):
                section = _section(header.group(1))
                self.sections.setdefault(section, number)
                continue
            if key := _KEY.match(line):
                name = key.group(1).strip("\"'")
                self.keys.setdefault((section, name), number)
                rest = line[key.end() :].strip()
                for quotes in ('"""', "'''"):
                    if rest.startswith(quotes) and rest.count(quotes) == 1:
                        closing = quotes
                        if rest == quotes:
                            self.multiline.add((section, name))

    def of(self, section: str, key: str | None = None) -> int:
        """The line of `key` in `section`, else of the section header, else 1."""
        if key is not None and (section, key) in self.keys:
            return self.keys[(section, key)]
        return self.sections.get(section, 1)


def suggest(name: str, known: Iterable[str]) -> str:
    """` (did you mean 'x'?)` when a known name is close to `name`, else ``."""
    close = difflib.get_close_matches(name, list(known), n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""


def _toml_type(value: object) -> str:
    names = {bool: "boolean", int: "integer", float: "float", str: "string", list: "array",
             dict: "table", datetime: "date-time"}  # fmt: skip
    return next((n for t, n in names.items() if isinstance(value, t)), type(value).__name__)


def _fits(value: object, field: Field) -> bool:
    if isinstance(value, bool) and bool not in field.types:
        return False
    if not isinstance(value, field.types):
        return False
    if field.items is not None:
        items = value.values() if isinstance(value, dict) else value
        return all(isinstance(item, field.items) for item in items)  # type: ignore[attr-defined]
    return True


class Reader:
    """Checked access to the parsed TOML, reporting problems with their lines.

    `schema[section][key]` is the `Field` each key accepts; sections are dotted paths
    (`"providers.work"`). Relative paths are taken from `base`, the file's folder.
    """

    def __init__(
        self,
        file: str,
        data: dict[str, Any],
        lines: Lines,
        report: Report,
        schema: dict[str, Mapping[str, Field]],
        *,
        base: Path,
    ) -> None:
        self.file = file
        self.data = data
        self.lines = lines
        self.report = report
        self.schema = schema
        self.base = base

    def problem(self, section: str, key: str | None, message: str) -> None:
        self.report(self.file, self.lines.of(section, key), message)

    def check_sections(self, known: Iterable[str]) -> None:
        """Report values outside any section and sections not in `known`."""
        names = list(known)
        for name, value in self.data.items():
            if not isinstance(value, dict):
                self.report(
                    self.file,
                    self.lines.of("", name),
                    f"{name!r} is outside any section; put it under one of "
                    f"{', '.join(f'[{s}]' for s in names)}",
                )
            elif name not in names:
                self.problem(name, None, f"unknown section [{name}]{suggest(name, names)}")

    def check_keys(
        self,
        section: str,
        refuse: Callable[[str], str | None] | None = None,
        *,
        unknown: bool = True,
    ) -> None:
        """Report the keys of `section` that `refuse` refuses (it returns why, or None), and
        (with `unknown`) those its schema does not know."""
        known = self.schema.get(section, {})
        for key in self.table(section):
            why = refuse(key) if refuse else None
            if why is not None:
                self.problem(section, key, f"[{section}] {key} is not allowed: {why}")
            elif unknown and key not in known:
                self.problem(section, key, f"[{section}] unknown key {key!r}{suggest(key, known)}")

    def table(self, section: str) -> dict[str, Any]:
        """The table at the dotted path `section` ({} when missing or not a table)."""
        value: Any = self.data
        for part in section.split("."):
            value = value.get(part) if isinstance(value, dict) else None
        return value if isinstance(value, dict) else {}

    def get(self, section: str, key: str, *, required: bool = False) -> Any:
        """The value of `key` if present and right for its `Field`; None (and a problem) if not."""
        table = self.table(section)
        if key not in table:
            if required:
                self.problem(section, None, f"[{section}] needs {key} = ...")
            return None
        value = table[key]
        field = self.schema[section][key]
        if not _fits(value, field):
            self.problem(
                section,
                key,
                f"[{section}] {key} must be {field.what}, not {_toml_type(value)} {value!r}",
            )
            return None
        if field.positive and value <= 0:
            self.problem(section, key, f"[{section}] {key} must be more than 0, got {value!r}")
            return None
        if field.choices and value not in field.choices:
            choices = ", ".join(map(repr, field.choices))
            self.problem(section, key, f"[{section}] {key} must be one of {choices}; got {value!r}")
            return None
        if field.path:
            return str(self.base / Path(value).expanduser())
        return value

    def env(self, section: str, key: str) -> str | None:
        """The value of the environment variable whose name is `[section] key`."""
        name = self.get(section, key)
        if name is None:
            return None
        value = os.environ.get(name)
        if not value:
            self.problem(
                section, key, f"[{section}] {key}: the environment variable {name} is not set"
            )
            return None
        return value


def read_toml(path: Path, what: str, error: type[SettingsFileError]) -> tuple[str, dict[str, Any]]:
    """The text of the TOML file at `path` and its data; `error` (one problem) when it cannot
    be read or parsed, `what` naming the file in the message ("the campaign file")."""
    file = str(path)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        raise error([Problem(file, None, f"cannot read {what}: {reason}")]) from None
    try:
        return text, tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        message = str(exc)
        at = _TOML_AT.search(message)
        line = int(at.group(1)) if at else None
        if at:
            message = f"{message[: at.start()]} (column {at.group(2)})"
        raise error([Problem(file, line, f"TOML syntax: {message}")]) from None
