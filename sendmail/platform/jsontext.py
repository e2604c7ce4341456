"""JSON from outside the service, read so that nothing in it can crash the reader.

``json.loads`` raises more than :class:`json.JSONDecodeError` on hostile text: a document nested
deeper than the interpreter's recursion limit raises :class:`RecursionError`, an integer of more
than 4,300 digits :class:`ValueError` (CPython's limit on int/str conversion), invalid UTF-8
:class:`UnicodeDecodeError`. Every route that parses a body reads it through :func:`loads`, so
each of those is one error the route turns into a 400, never a 500 with a traceback.
"""

from __future__ import annotations

import json
from typing import Any


class MalformedJson(ValueError):
    """The text is not JSON this service can read (the reason is in the message, for logs)."""


def loads(raw: bytes | str) -> Any:
    """The JSON value in ``raw`` (UTF-8 when bytes), or :class:`MalformedJson`."""
    try:
        text = raw.decode("utf-8") if isinstance(raw, bytes) else raw
        return json.loads(text)
    except RecursionError as e:
        raise MalformedJson("nested too deeply") from e
    except ValueError as e:  # JSONDecodeError, UnicodeDecodeError, an integer too long
        raise MalformedJson(type(e).__name__) from e
