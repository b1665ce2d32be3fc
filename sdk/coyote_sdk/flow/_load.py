"""Reading a CoyoteFlow file: YAML with the position of every value, the JSON Schema, and the
checks a schema cannot express. Every problem names its line, column and field."""

from __future__ import annotations

import dataclasses
import functools
import json
from collections.abc import Iterator, Mapping, Sequence
from importlib import resources
from pathlib import Path
from typing import Any

import jsonschema
import yaml

SCHEMA_FILE = "coyoteflow.schema.json"

FieldPath = tuple[str | int, ...]


@dataclasses.dataclass(frozen=True)
class Problem:
    """One thing wrong with a flow.

    Attributes:
        file: The flow file.
        line: 1-based line of the value at fault (0 when unknown).
        column: 1-based column.
        path: The field, e.g. ``modules.0.units.1.account``; empty for the whole document.
        message: What is wrong and what was expected.
    """

    file: str
    line: int
    column: int
    path: str
    message: str

    def __str__(self) -> str:
        where = f"{self.file}:{self.line}:{self.column}"
        return f"{where}: {self.path}: {self.message}" if self.path else f"{where}: {self.message}"

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


class FlowError(Exception):
    """A flow file that cannot be used; ``problems`` lists every problem found, in file order."""

    def __init__(self, problems: Sequence[Problem]) -> None:
        self.problems = list(problems)
        super().__init__("\n".join(str(p) for p in self.problems))


@dataclasses.dataclass(frozen=True)
class Flow:
    """A valid flow: its plain data (as in the file) and where it came from.

    Attributes:
        data: The document, as JSON-compatible data.
        path: The file; relative paths in the flow (bot files, replay files, the build
            context) are relative to its folder.
        marks: The line and column of every field, by path.
    """

    data: dict[str, Any]
    path: Path
    marks: Mapping[FieldPath, tuple[int, int]] = dataclasses.field(repr=False, compare=False)

    @property
    def name(self) -> str:
        return str(self.data["metadata"]["name"])

    @property
    def organization(self) -> str:
        return str(self.data["metadata"]["organization"])

    @property
    def mode(self) -> str:
        return str(self.data["mode"])

    @property
    def base_dir(self) -> Path:
        return self.path.parent

    @property
    def connections(self) -> dict[str, Any]:
        return dict(self.data["connections"])

    @property
    def accounts(self) -> list[dict[str, Any]]:
        return list(self.data.get("accounts") or [])

    def account_id(self, name: str) -> str:
        """The id intents and reports carry: ``<organization>.<account>``."""
        return f"{self.organization}.{name}"

    def units(self, kind: str | None = None) -> list[dict[str, Any]]:
        """The units of the enabled modules, in file order; only those of ``kind`` if given."""
        return [unit for _, unit in self.located_units() if kind is None or unit["kind"] == kind]

    def located_units(self) -> Iterator[tuple[FieldPath, dict[str, Any]]]:
        """The units of the enabled modules with their field paths (for messages)."""
        for m, module in enumerate(self.data.get("modules") or []):
            if module.get("enabled", True) is False:
                continue
            for u, unit in enumerate(module.get("units") or []):
                yield ("modules", m, "units", u), unit

    def resolve(self, relative: str) -> Path:
        """A path of the flow (bot file, replay file), relative to the flow's folder."""
        return (self.base_dir / relative).resolve()


@functools.cache
def schema() -> dict[str, Any]:
    """The CoyoteFlow JSON Schema (Draft 2020-12), as shipped in the package and published as
    ``docs/schemas/coyoteflow.schema.json``."""
    text = resources.files("coyote_sdk.flow").joinpath(SCHEMA_FILE).read_text(encoding="utf-8")
    return dict(json.loads(text))


def schema_text() -> str:
    """The schema file's text, byte for byte."""
    return resources.files("coyote_sdk.flow").joinpath(SCHEMA_FILE).read_text(encoding="utf-8")


def load_flow(path: str | Path) -> Flow:
    """Reads and checks a flow file.

    Args:
        path: The YAML file.

    Returns:
        The flow.

    Raises:
        FlowError: The file cannot be read, is not YAML, does not match the schema or fails a
            semantic check (names not unique, a unit naming an unknown account...). Every
            problem is listed with its line and column.
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        raise FlowError([Problem(str(path), 0, 0, "", f"cannot read the file: {reason}")]) from exc
    return load_flow_text(text, path=path)


def load_flow_text(text: str, *, path: str | Path = "<flow>") -> Flow:
    """As :func:`load_flow`, for a flow given as text; ``path`` names it in messages and anchors
    its relative paths."""
    path = Path(path)
    data, marks = _parse(text, str(path))
    problems = _schema_problems(data, marks, str(path))
    if not problems:
        from coyote_sdk.flow._semantic import semantic_problems

        flow = Flow(data=data, path=path.resolve() if path.name != "<flow>" else path, marks=marks)
        problems = [
            _problem(str(path), marks, where, message) for where, message in semantic_problems(flow)
        ]
        if not problems:
            return flow
    raise FlowError(sorted(problems, key=lambda p: (p.line, p.column, p.path)))


# -- YAML WITH POSITIONS -----------------------------------------------------------------------


class _Loader(yaml.SafeLoader):
    """YAML 1.1's safe types, without dates: a flow has no timestamps, and `2024-01-02` stays
    the string it looks like instead of failing the schema as a date."""


_Loader.yaml_implicit_resolvers = {
    first: [(tag, regexp) for tag, regexp in resolvers if tag != "tag:yaml.org,2002:timestamp"]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}


def _parse(text: str, file: str) -> tuple[Any, dict[FieldPath, tuple[int, int]]]:
    loader = _Loader(text)
    try:
        node = loader.get_single_node()
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line, column = (mark.line + 1, mark.column + 1) if mark else (0, 0)
        what = " ".join(part for part in (exc.context, exc.problem) if part)
        raise FlowError([Problem(file, line, column, "", f"not valid YAML: {what}")]) from exc
    except yaml.YAMLError as exc:
        raise FlowError([Problem(file, 0, 0, "", f"not valid YAML: {exc}")]) from exc
    finally:
        loader.dispose()
    if node is None:
        raise FlowError(
            [Problem(file, 1, 1, "", "the file is empty: a flow starts with apiVersion")]
        )
    marks: dict[FieldPath, tuple[int, int]] = {}
    problems: list[Problem] = []
    data = _build(loader, node, (), marks, problems, file)
    if problems:
        raise FlowError(problems)
    return data, marks


def _build(
    loader: _Loader,
    node: yaml.Node,
    path: FieldPath,
    marks: dict[FieldPath, tuple[int, int]],
    problems: list[Problem],
    file: str,
) -> Any:
    marks[path] = (node.start_mark.line + 1, node.start_mark.column + 1)
    if isinstance(node, yaml.MappingNode):
        loader.flatten_mapping(node)  # `<<: *anchor` merges
        result: dict[str, Any] = {}
        for key_node, value_node in node.value:
            key = loader.construct_object(key_node, deep=True)
            if not isinstance(key, str):
                key = str(key)  # the schema names keys as strings; `1:` or `yes:` read as such
            if key in result:
                line, column = key_node.start_mark.line + 1, key_node.start_mark.column + 1
                problems.append(Problem(file, line, column, _dotted((*path, key)), "duplicate key"))
                continue
            child = (*path, key)
            result[key] = _build(loader, value_node, child, marks, problems, file)
            # Keys are marked where the key stands, so "not allowed" points at the key itself.
            marks[(*child, "<key>")] = (
                key_node.start_mark.line + 1,
                key_node.start_mark.column + 1,
            )
        return result
    if isinstance(node, yaml.SequenceNode):
        return [
            _build(loader, item, (*path, i), marks, problems, file)
            for i, item in enumerate(node.value)
        ]
    value = loader.construct_object(node, deep=True)
    if isinstance(value, float) and value != value:  # .nan
        return str(node.value)
    return value


# -- SCHEMA ----------------------------------------------------------------------------------


@functools.cache
def _validator() -> jsonschema.Draft202012Validator:
    return jsonschema.Draft202012Validator(schema())


def _schema_problems(
    data: Any, marks: Mapping[FieldPath, tuple[int, int]], file: str
) -> list[Problem]:
    problems: list[Problem] = []
    seen: set[tuple[FieldPath, str]] = set()
    for error in _validator().iter_errors(data):
        where: FieldPath = tuple(error.absolute_path)
        message = _message(error)
        if error.validator == "additionalProperties":
            extra = sorted(
                set(error.instance) - set(error.schema.get("properties", {}))
                if isinstance(error.instance, dict)
                else []
            )
            allowed = sorted(error.schema.get("properties", {}))
            for key in extra:
                key_path = (*where, key)
                if (key_path, "extra") not in seen:
                    seen.add((key_path, "extra"))
                    problems.append(
                        _problem(
                            file,
                            marks,
                            key_path,
                            f"{key!r} is not allowed here; expected one of {allowed}",
                            key=True,
                        )
                    )
            continue
        if (where, message) in seen:
            continue
        seen.add((where, message))
        # A field that may not be there at all (`not: {}`) is pointed at by its key.
        forbidden = error.validator == "not" and error.validator_value == {}
        problems.append(_problem(file, marks, where, message, key=forbidden))
    return problems


def _message(error: jsonschema.ValidationError) -> str:
    # Leaf schemas carry a message for people ("x-message"); jsonschema's would quote regexes.
    custom = error.schema.get("x-message") if isinstance(error.schema, dict) else None
    if custom:
        return str(custom).replace("{value!r}", repr(error.instance))
    if error.validator == "required":
        # One error per missing property: "'mode' is a required property".
        return error.message.replace(" is a required property", " is required")
    if error.validator == "enum":
        return f"{error.instance!r} is not one of {error.validator_value}"
    return str(error.message)


def _problem(
    file: str,
    marks: Mapping[FieldPath, tuple[int, int]],
    path: FieldPath,
    message: str,
    *,
    key: bool = False,
) -> Problem:
    mark = marks.get((*path, "<key>")) if key else None
    probe = path
    while mark is None:
        mark = marks.get(probe)
        if mark is None:
            if not probe:
                mark = (0, 0)
                break
            probe = probe[:-1]
    return Problem(file, mark[0], mark[1], _dotted(path), message)


def _dotted(path: FieldPath) -> str:
    return ".".join(str(part) for part in path)
