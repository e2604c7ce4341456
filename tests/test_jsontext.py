"""Reading JSON from outside: one error for every hostile text, and large personalised lists
parsed an element at a time with exactly json.loads's result."""

from __future__ import annotations

import gc
import json

import pytest

from sendmail.platform import jsontext
from sendmail.platform.jsontext import MalformedJson, loads

STREAMED = ("recipients",)


def big(document: str) -> str:
    """``document`` padded past the size from which lists are streamed (trailing white space)."""
    return document + " " * jsontext.STREAM_FROM_CHARS


@pytest.mark.parametrize(
    "document",
    [
        '{"recipients": [{"email": "a@x.com", "variables": {"n": "김"}}, "b@x.com", 1, null]}',
        '{ "a" : 1 , "recipients" : [ ] , "b" : [1, {"recipients": [2]}] }',
        '{"recipients": "not a list", "x": {"recipients": [1]}}',
        '{"recipients": [1], "recipients": [2, 3]}',
        "{}",
        '["recipients", 1]',
        '"just a string"',
        '{"recipients": [[1, [2, [3]]], {"k": "\\ud800"}], "n": 1e400}',
    ],
)
def test_a_streamed_parse_gives_what_json_loads_gives(document):
    expected = json.loads(document)

    assert loads(big(document), streamed=STREAMED) == expected
    assert loads(big(document).encode(), streamed=STREAMED) == expected


@pytest.mark.parametrize(
    "document",
    [
        '{"recipients": [1, 2,]}',
        '{"recipients": [1 2]}',
        '{"recipients": [1, 2}',
        '{"recipients": [1, 2]',
        '{"recipients" [1]}',
        "{recipients: [1]}",
        '{"recipients": [1]} extra',
        '{"recipients": [' + "[" * 100_000 + "]" * 100_000 + "]}",
        '{"recipients": [' + "9" * 5000 + "]}",
        '{"recipients": [',
    ],
)
def test_a_broken_document_is_one_error_streamed_or_not(document):
    for streamed in ((), STREAMED):
        with pytest.raises(MalformedJson):
            loads(big(document), streamed=streamed)


def test_the_collector_is_put_back_as_it_was():
    document = big('{"recipients": [1, 2, 3]}')
    assert gc.isenabled()

    loads(document, streamed=STREAMED)
    with pytest.raises(MalformedJson):
        loads(document.replace("3]", "3"), streamed=STREAMED)

    assert gc.isenabled()
    gc.disable()
    try:
        loads(document, streamed=STREAMED)
        assert not gc.isenabled()
    finally:
        gc.enable()
