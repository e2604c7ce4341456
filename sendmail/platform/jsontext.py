"""JSON from outside the service, read so that nothing in it can crash the reader.

``json.loads`` raises more than :class:`json.JSONDecodeError` on hostile text: a document nested
deeper than the interpreter's recursion limit raises :class:`RecursionError`, an integer of more
than 4,300 digits :class:`ValueError` (CPython's limit on int/str conversion), invalid UTF-8
:class:`UnicodeDecodeError`. Every route that parses a body reads it through :func:`loads`, so
each of those is one error the route turns into a 400, never a 500 with a traceback.

CPython's parser holds the GIL for a whole document, and a large one also sets off the cyclic
garbage collector (which holds it too): a 55 MB document of 500,000 small objects froze every
other thread for about 0.8 s. ``loads(raw, streamed=...)`` parses the arrays under the named keys
of a top-level object one element at a time (each element a short C call, the threads taking
turns in between) with the collector paused: the longest pause another thread sees drops to a
few milliseconds, for about 30% more CPU on such arrays. Arrays of plain strings parse so fast in
one call (a million addresses: about 0.25 s) that they are left to it.
"""

from __future__ import annotations

import gc
import json
from collections.abc import Collection, Iterator
from contextlib import contextmanager
from json.decoder import WHITESPACE, scanstring  # type: ignore[attr-defined]
from typing import Any

_DECODER = json.JSONDecoder()
#: Documents smaller than this are parsed in one call (a pause of a few milliseconds at most).
STREAM_FROM_CHARS = 1_000_000


class MalformedJson(ValueError):
    """The text is not JSON this service can read (the reason is in the message, for logs)."""


def loads(raw: bytes | str, *, streamed: Collection[str] = ()) -> Any:
    """The JSON value in ``raw`` (UTF-8 when bytes), or :class:`MalformedJson`. With
    ``streamed``, a large top-level object's arrays under those keys are parsed an element at a
    time (see the module docs); the value is the same as ``json.loads`` gives."""
    try:
        text = raw.decode("utf-8") if isinstance(raw, bytes) else raw
        if not streamed or len(text) < STREAM_FROM_CHARS:
            return json.loads(text)
        with _collector_paused():
            return _object_streaming(text, frozenset(streamed))
    except RecursionError as e:
        raise MalformedJson("nested too deeply") from e
    except IndexError as e:  # the text ended where a value was still due
        raise MalformedJson("JSONDecodeError") from e
    except ValueError as e:  # JSONDecodeError, UnicodeDecodeError, an integer too long
        raise MalformedJson(type(e).__name__) from e


@contextmanager
def _collector_paused() -> Iterator[None]:
    """The cyclic collector off for the parse (parsed JSON holds no cycles to collect, and a
    collection of a large young generation holds the GIL for hundreds of milliseconds); put back
    as it was. Process-wide: another thread allocating meanwhile is collected afterwards."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


def _skip(text: str, index: int) -> int:
    end: int = WHITESPACE.match(text, index).end()
    return end


def _object_streaming(text: str, streamed: frozenset[str]) -> Any:
    index = _skip(text, 0)
    if not text.startswith("{", index):
        return json.loads(text)  # not an object: nothing to stream
    raw_decode = _DECODER.raw_decode
    result: dict[str, Any] = {}
    index = _skip(text, index + 1)
    if text[index] == "}":
        index += 1
    else:
        while True:
            if text[index] != '"':
                raise json.JSONDecodeError("Expecting property name", text, index)
            key, index = scanstring(text, index + 1)
            index = _skip(text, index)
            if text[index] != ":":
                raise json.JSONDecodeError("Expecting ':' delimiter", text, index)
            index = _skip(text, index + 1)
            if key in streamed and text[index] == "[":
                value, index = _array_streaming(text, index)
            else:
                value, index = raw_decode(text, index)
            result[key] = value  # a repeated key: the last one wins, as in json.loads
            index = _skip(text, index)
            if text[index] == ",":
                index = _skip(text, index + 1)
                continue
            if text[index] != "}":
                raise json.JSONDecodeError("Expecting ',' delimiter", text, index)
            index += 1
            break
    if _skip(text, index) != len(text):
        raise json.JSONDecodeError("Extra data", text, index)
    return result


def _array_streaming(text: str, index: int) -> tuple[list[Any], int]:
    raw_decode = _DECODER.raw_decode
    items: list[Any] = []
    index = _skip(text, index + 1)
    if text[index] == "]":
        return items, index + 1
    while True:
        value, index = raw_decode(text, index)  # one element: a short C call
        items.append(value)
        index = _skip(text, index)
        if text[index] == ",":
            index = _skip(text, index + 1)
            continue
        if text[index] != "]":
            raise json.JSONDecodeError("Expecting ',' delimiter", text, index)
        return items, index + 1
