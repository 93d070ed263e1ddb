"""Reading a tour file: YAML with positions, so every error names FILE:LINE:COL.

The reader builds plain Python data from PyYAML's node graph itself, with YAML 1.2 scalar
rules: `19:30` stays a string (YAML 1.1 would make it the number 1170), `NO` stays a string,
and a key written twice is an error instead of a silent overwrite.
"""

from __future__ import annotations

import difflib
import re
import typing
from dataclasses import dataclass
from pathlib import Path

import yaml
from pydantic import BaseModel, ValidationError

from nomadkit.errors import UserError
from nomadkit.tour import PATTERNS, Problem, Tour, format_loc

Loc = tuple[str | int, ...]

_INT = re.compile(r"^[-+]?(0|[1-9][0-9]*)$")
_FLOAT = re.compile(r"^[-+]?(\.[0-9]+|[0-9]+(\.[0-9]*)?)([eE][-+]?[0-9]+)?$")


@dataclass(frozen=True)
class Located:
    """One problem with its place in the file."""

    file: str
    line: int
    col: int
    path: str
    message: str

    def __str__(self) -> str:
        where = f"{self.path}: " if self.path else ""
        return f"{self.file}:{self.line}:{self.col}: {where}{self.message}"


class TourFileError(UserError):
    """A tour file that cannot be used; carries every problem found."""

    def __init__(self, problems: list[Located]) -> None:
        self.problems = problems
        noun = "problem" if len(problems) == 1 else "problems"
        super().__init__("\n".join([*map(str, problems), f"{len(problems)} {noun} found."]))


class _Positions:
    """Maps a field path to where its key (or, for list items, its value) starts."""

    def __init__(self) -> None:
        self.marks: dict[Loc, tuple[int, int]] = {}

    def at(self, loc: Loc) -> tuple[int, int]:
        for end in range(len(loc), -1, -1):
            if loc[:end] in self.marks:
                return self.marks[loc[:end]]
        return (1, 1)


def _scalar(node: yaml.ScalarNode) -> object:
    value = node.value
    if node.style:  # quoted: always a string
        return value
    if value in ("", "~", "null", "Null", "NULL"):
        return None
    if value in ("true", "True", "TRUE", "false", "False", "FALSE"):
        return value.lower() == "true"
    if _INT.match(value):
        return int(value)
    if _FLOAT.match(value):
        return float(value)
    return value


def _build(node: yaml.Node, loc: Loc, pos: _Positions, errors: list[tuple[Loc, str]]) -> object:
    mark = (node.start_mark.line + 1, node.start_mark.column + 1)
    pos.marks.setdefault(loc, mark)
    if isinstance(node, yaml.MappingNode):
        out: dict[str, object] = {}
        for key_node, value_node in node.value:
            key = str(_scalar(key_node)) if isinstance(key_node, yaml.ScalarNode) else "?"
            key_loc = (*loc, key)
            if key in out:
                pos.marks[(*key_loc, "__dup__")] = (key_node.start_mark.line + 1,
                                                     key_node.start_mark.column + 1)
                errors.append(((*key_loc, "__dup__"),
                               f"'{key}' is written twice — keep one of them"))
                continue
            pos.marks[key_loc] = (key_node.start_mark.line + 1, key_node.start_mark.column + 1)
            out[key] = _build(value_node, key_loc, pos, errors)
        return out
    if isinstance(node, yaml.SequenceNode):
        return [_build(item, (*loc, i), pos, errors) for i, item in enumerate(node.value)]
    return _scalar(node)


def _model_at(loc: Loc) -> type[BaseModel] | None:
    """The model class a field path lands in, to suggest field names it knows."""
    model: object = Tour
    for part in loc:
        if isinstance(part, int):
            continue
        if not (isinstance(model, type) and issubclass(model, BaseModel)):
            return None
        field = model.model_fields.get(str(part))
        if field is None:
            return None
        model = _unwrap(field.annotation)
    return model if isinstance(model, type) and issubclass(model, BaseModel) else None


def _unwrap(annotation: object) -> object:
    """list[Kit] -> Kit, Cloud | None -> Cloud."""
    for arg in (*typing.get_args(annotation), annotation):
        if isinstance(arg, type) and issubclass(arg, BaseModel):
            return arg
        inner = typing.get_args(arg)
        if inner and isinstance(inner[0], type) and issubclass(inner[0], BaseModel):
            return inner[0]
    return annotation


_HINTS = {
    "missing": "add it",
    "int_parsing": "write a whole number",
    "int_type": "write a whole number",
    "float_parsing": "write a number",
    "bool_type": "write true or false",
    "bool_parsing": "write true or false",
    "string_type": "write text (quote it if it looks like a number)",
    "list_type": "write a list (lines starting with '- ')",
    "model_type": "write a mapping of key: value lines",
    "model_attributes_type": "write a mapping of key: value lines",
    "dict_type": "write a mapping of key: value lines",
    "date_from_datetime_parsing": "write a date as YYYY-MM-DD",
    "date_parsing": "write a date as YYYY-MM-DD",
    "date_type": "write a date as YYYY-MM-DD",
    "time_parsing": "write a time as HH:MM (quote it: \"19:30\")",
    "time_type": "write a time as HH:MM",
    "url_parsing": "write a full https:// address",
    "url_scheme": "write a full https:// address",
    "too_short": "add at least one entry",
    "decimal_parsing": "write an amount such as 25.00",
    "decimal_max_places": "use at most two decimal places",
    "greater_than_equal": "raise it",
    "greater_than": "raise it",
    "less_than_equal": "lower it",
    "less_than": "lower it",
    "too_long": "remove some entries",
    "string_too_short": "fill it in",
    "string_too_long": "shorten it",
}


def _describe(err: dict, loc: Loc) -> str:
    kind = err["type"]
    if kind == "extra_forbidden":
        key = str(loc[-1])
        model = _model_at(loc[:-1])
        known = list(model.model_fields) if model else []
        guess = difflib.get_close_matches(key, known, n=1, cutoff=0.6)
        hint = f"did you mean '{guess[0]}'?" if guess else f"known keys: {', '.join(known)}"
        return f"unknown key '{key}' — {hint}"
    if kind == "string_pattern_mismatch":
        pattern = err["ctx"]["pattern"]
        return f"{err['input']!r} is not {PATTERNS.get(pattern, 'of the form ' + pattern)} — fix it"
    message = err["msg"]
    if kind.startswith("value_error"):
        message = message.removeprefix("Value error, ")
    hint = _HINTS.get(kind)
    if kind == "missing":
        return f"is required — {hint}"
    if kind == "literal_error":
        return f"{message} — pick one of those"
    return f"{message} — {hint or 'see docs/tour-file.md for what this field takes'}"


def _locate(file: str, pos: _Positions, loc: Loc, message: str) -> Located:
    line, col = pos.at(loc)
    return Located(file, line, col, format_loc(tuple(p for p in loc if p != "__dup__")), message)


def parse(text: str, file: str = "<tour>") -> Tour:
    """Validate tour-file text; raise `TourFileError` with every problem, each located."""
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line, col = (mark.line + 1, mark.column + 1) if mark else (1, 1)
        what = exc.problem or "not valid YAML"
        raise TourFileError([Located(file, line, col, "", (
            f"YAML syntax: {what} — check the indentation and quoting on this line"))]) from None
    if node is None:
        raise TourFileError([Located(file, 1, 1, "", (
            "the tour file is empty — start from tours/demo.yaml (`nomadkit schema` lists every field)"))])
    pos = _Positions()
    dup_errors: list[tuple[Loc, str]] = []
    data = _build(node, (), pos, dup_errors)
    if not isinstance(data, dict):
        raise TourFileError([Located(file, 1, 1, "", (
            "a tour file is a mapping (name:, stops:, kits:, commerce: …) — start from tours/demo.yaml"))])
    problems: list[Problem] = []
    located = [_locate(file, pos, loc, msg) for loc, msg in dup_errors]
    try:
        tour = Tour.model_validate(data, context={"problems": problems})
    except ValidationError as exc:
        located += [_locate(file, pos, tuple(e["loc"]), _describe(e, tuple(e["loc"])))
                    for e in exc.errors()]
        tour = None
    located += [_locate(file, pos, p.loc, p.message) for p in problems]
    if located:
        raise TourFileError(sorted(located, key=lambda p: (p.line, p.col)))
    assert tour is not None
    return tour


def load(path: Path) -> Tour:
    """Read a tour file from disk (see `parse`)."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise UserError(f"{path}: no such tour file — check the path (examples are in tours/)") from None
    except IsADirectoryError:
        raise UserError(f"{path}: is a directory — name the tour's .yaml file") from None
    except UnicodeDecodeError as exc:
        raise UserError(f"{path}: byte {exc.start} is not UTF-8 — save the file as UTF-8") from None
    tour = parse(text, str(path))
    if tour.assets_dir and not Path(tour.assets_dir).is_absolute():
        tour = tour.model_copy(update={"assets_dir": str((path.parent / tour.assets_dir).resolve())})
    return tour
