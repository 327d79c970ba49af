"""Validated identifiers: safe in a path or an object key (no traversal)."""

from __future__ import annotations

import re

from scalespace import ScalespaceError

ID_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")


def check_id(value: str, what: str = "id") -> str:
    if not isinstance(value, str) or not ID_PATTERN.match(value) or ".." in value:
        raise ScalespaceError(
            f"invalid {what} {value!r}: use 1-128 letters, digits, '.', '_' or '-', starting with a letter or digit"
        )
    return value
