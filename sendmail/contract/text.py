"""What a one-line field may hold: no line break of any kind (header injection).

The request validation (:mod:`sendmail.contract.models`), the OpenAPI document's patterns and the
MIME builder (:mod:`sendmail.sending.mime`) all refuse the same set, defined once here.
"""

from __future__ import annotations

import re

#: Every character ``str.splitlines`` breaks on: CR, LF and the rarer separators some parsers
#: also honour. None may be in a header's content; the request validation refuses the same set.
LINE_BREAK_CHARACTERS = "\r\n\v\f\x1c\x1d\x1e\x85\u2028\u2029"
_LINE_BREAKS = re.compile(f"[{re.escape(LINE_BREAK_CHARACTERS)}]")


def has_line_break(value: str) -> bool:
    """True when ``value`` holds any of :data:`LINE_BREAK_CHARACTERS`."""
    return _LINE_BREAKS.search(value) is not None
