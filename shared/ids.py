"""Validated identifiers: safe in a path or an object key (no traversal)."""

from __future__ import annotations

import re
import secrets
from datetime import datetime, timezone

from scalespace import ScalespaceError

ID_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")
#: Crockford's base32 alphabet in lower case (no i, l, o, u): 5 bits a character, sorts like the number
BASE32 = "0123456789abcdefghjkmnpqrstvwxyz"
#: random characters of a new id: 26 x 5 = 130 random bits (a UUIDv4 has 122)
RANDOM_CHARS = 26
#: the time part of a new id, UTC to the millisecond, fixed width (so ids sort by time)
TIME_FORMAT = "%Y%m%dT%H%M%S"


def new_id(prefix: str, now: datetime | None = None) -> str:
    """A fresh id `<prefix>-<UTC time to the ms>-<26 base32 chars>`, e.g.
    `sample-20261201T163358123Z-4k8w0m3c1v9x2q7r5t6y8z0b1d`.

    Ids with the same prefix sort by the time they were made (to the
    millisecond); 130 random bits make two equal ids unlikely even at millions
    a second, and the job store refuses to create a job whose id exists (the
    caller draws a new one), so a collision can never merge two jobs.
    """
    now = (now or datetime.now(timezone.utc)).astimezone(timezone.utc)
    stamp = f"{now.strftime(TIME_FORMAT)}{now.microsecond // 1000:03d}Z"
    bits = secrets.randbits(5 * RANDOM_CHARS)
    rand = "".join(BASE32[(bits >> (5 * i)) & 31] for i in reversed(range(RANDOM_CHARS)))
    return check_id(f"{prefix}-{stamp}-{rand}", "id")


def check_id(value: str, what: str = "id") -> str:
    if not isinstance(value, str) or not ID_PATTERN.match(value) or ".." in value:
        raise ScalespaceError(
            f"invalid {what} {value!r}: use 1-128 letters, digits, '.', '_' or '-', starting with a letter or digit"
        )
    return value
