"""The one reader of spec files (YAML or JSON): job files, sweeps files, `--param` values.

A spec is plain data, so the reader refuses what only an attack needs:

- anchors and aliases (`&a`, `*a`): nested aliases expand a few hundred bytes
  into billions of values (the "billion laughs"), and a spec never needs them;
- nesting deeper than MAX_DEPTH levels;
- a file (or standard input) above SCALESPACE_MAX_SPEC_BYTES (1 MiB by
  default; the API's own cap on a request body is SCALESPACE_MAX_BODY_BYTES).

The events are checked first (libyaml, streaming, no values built), then the
document is built with the safe loader. Every refusal is a ScalespaceError: one
line naming the file and the fix.

`check_finite` is the other rule of plain data, applied by parse_spec to every
spec from every door: numbers are finite (no NaN or Infinity, which YAML
writes `.nan`, `.inf` and JSON parsers accept as `NaN`, `Infinity`), in the
typed fields and in the free-form ones (process_params, network, template).
"""

from __future__ import annotations

import math
import sys
from pathlib import Path
from typing import Any

import yaml

from scalespace import ScalespaceError

#: deepest nesting of mappings and lists a spec may have
MAX_DEPTH = 64

_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def max_spec_bytes() -> int:
    """SCALESPACE_MAX_SPEC_BYTES (1 MiB by default)."""
    from pydantic import ValidationError

    from scalespace.config import get_settings

    try:
        return int(get_settings().max_spec_bytes)
    except ValidationError as e:
        err = e.errors()[0]
        raise ScalespaceError(f"SCALESPACE_{str(err['loc'][0]).upper()}: {err['msg']}") from None


def check_finite(data: Any, path: str = "") -> None:
    """ScalespaceError "field.path: ..." at a NaN or infinite float anywhere in `data` (dicts, lists; no recursion)."""
    stack: list[tuple[str, Any]] = [(path, data)]
    while stack:
        where, value = stack.pop()
        if isinstance(value, float):
            if not math.isfinite(value):
                word = "NaN" if math.isnan(value) else ("Infinity" if value > 0 else "-Infinity")
                raise ScalespaceError(f"{where or 'spec'}: {word} is not allowed; use a finite number")
        elif isinstance(value, dict):
            stack.extend((f"{where}.{k}" if where else str(k), v) for k, v in reversed(list(value.items())))
        elif isinstance(value, (list, tuple)):
            stack.extend((f"{where}.{i}" if where else str(i), v) for i, v in reversed(list(enumerate(value))))


def _check_events(text: str, source: str) -> None:
    depth = 0
    for event in yaml.parse(text, Loader=_LOADER):
        if isinstance(event, yaml.AliasEvent) or getattr(event, "anchor", None) is not None:
            line = event.start_mark.line + 1 if event.start_mark else "?"
            raise ScalespaceError(f"{source}: line {line}: YAML anchors and aliases (&name, *name) are not allowed "
                                  "in a spec; write the values out")
        if isinstance(event, (yaml.MappingStartEvent, yaml.SequenceStartEvent)):
            depth += 1
            if depth > MAX_DEPTH:
                raise ScalespaceError(f"{source}: nested deeper than {MAX_DEPTH} levels; a spec is flat data")
        elif isinstance(event, (yaml.MappingEndEvent, yaml.SequenceEndEvent)):
            depth -= 1


def _yaml_problem(e: yaml.YAMLError) -> str:
    mark = getattr(e, "problem_mark", None)
    problem = getattr(e, "problem", None)
    if problem and mark is not None:
        return f"{problem} (line {mark.line + 1}, column {mark.column + 1})"
    return str(e).splitlines()[0] if str(e) else type(e).__name__


def load_spec_text(text: str | bytes, source: str = "spec", max_bytes: int | None = None) -> Any:
    """The data of a YAML or JSON text, or ScalespaceError naming `source` and the fix."""
    limit = max_spec_bytes() if max_bytes is None else max_bytes
    size = len(text.encode() if isinstance(text, str) else text)
    if size > limit:
        raise ScalespaceError(f"{source} is {size} bytes, above the limit of {limit} (SCALESPACE_MAX_SPEC_BYTES); "
                              "make the spec smaller")
    if isinstance(text, bytes):
        try:
            text = text.decode("utf-8")
        except UnicodeDecodeError:
            raise ScalespaceError(f"{source} is not UTF-8 text; save it as UTF-8 YAML or JSON") from None
    try:
        _check_events(text, source)
        # what yaml.safe_load does, with libyaml's safe loader when it is there (10x faster, half the memory)
        loader = _LOADER(text)
        try:
            return loader.get_single_data()
        finally:
            loader.dispose()
    except yaml.YAMLError as e:
        raise ScalespaceError(f"{source} is not valid YAML/JSON: {_yaml_problem(e)}") from None
    except (ValueError, RecursionError, OverflowError) as e:  # e.g. an integer with too many digits
        if isinstance(e, ScalespaceError):
            raise
        raise ScalespaceError(f"{source} holds a value that cannot be read: {str(e).splitlines()[0]}") from None


def read_spec_file(path: str | Path, what: str = "job file", max_bytes: int | None = None) -> Any:
    """The data of a YAML or JSON file ('-': standard input), read up to the size cap and no further."""
    limit = max_spec_bytes() if max_bytes is None else max_bytes
    source = f"{what} {path}"
    try:
        if str(path) == "-":
            raw = sys.stdin.buffer.read(limit + 1)
        else:
            with open(path, "rb") as f:
                raw = f.read(limit + 1)
    except OSError as e:
        raise ScalespaceError(f"cannot read {source}: {e.strerror}") from None
    if len(raw) > limit:
        raise ScalespaceError(f"{source} is larger than the limit of {limit} bytes (SCALESPACE_MAX_SPEC_BYTES); "
                              "make the spec smaller or raise the limit")
    return load_spec_text(raw, source, limit)
