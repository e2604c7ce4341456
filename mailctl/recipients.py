"""Reading a recipient list, and refusing it whole if any row is bad — before anything is sent.

Contract:

- **Formats.** A CSV file (a column named ``email`` — any case, spaces, ``-`` or ``_`` ignored, so
  ``E-mail`` and ``Email Address`` count — else the first column; with a header row or without)
  or a plain list (one address a line: a one-column CSV). The delimiter is sniffed among ``,``,
  ``;`` and tab.
- **Header row.** The first row is a header only when one of its cells is a recognised header
  name (:data:`ADDRESS_HEADERS`: ``email``, ``e-mail``, ``email address``, ``mail``,
  ``recipient``, ``address``, ``to`` … ; the address column is the first of those, ``email``-like
  names before the others), or the name ``--column`` gives. Otherwise the first row is data, and
  checked like any other: a word there is refused with its line (and a hint that a header row
  needs a recognised name), never skipped silently.
- **Text.** UTF-8 by default (a byte-order mark, as Excel writes, is ignored); another encoding
  (Korean Excel's ``cp949``) on request. Bytes that do not decode are reported with their line.
- **Checks.** Every address is checked with ``email-validator`` under the service's own rules
  (syntax only, no DNS, no internationalised local parts), after trimming the spaces spreadsheet
  cells often carry. Blank rows are skipped. A row whose address cell is empty or invalid is a
  problem, reported with its line number (the first physical line of the row).
- **All or nothing.** If any row is bad, :class:`BadRows` lists them (all of them; the caller
  chooses how many to show) and no list is returned: nothing is sent from half a file.
- **Duplicates** (compared as the service compares them: case-insensitively, the domain in its
  ASCII form, :func:`address_key`) are kept once, with their first spelling, as the
  service does; they are counted, not refused. Order is the file's.

No network, no state: a pure function of the file's bytes and the options.

**Memory.** A list of a million rows is read whole (the request that sends it is built from it
anyway), but held once: the text is decoded from the bytes, the bytes dropped, and the CSV
reader fed one line at a time from the text (:func:`_lines`, not a ``StringIO`` copy, which
stores four bytes a character); an address that is its own comparison key (lower case, an ASCII
domain: most are) is stored once, not twice.
"""

from __future__ import annotations

import contextlib
import csv
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from email_validator import EmailNotValidError, validate_email

#: Header names that mark a header row and its address column (after :func:`_header_key`: any
#: case, spaces, ``-``, ``_`` and ``.`` ignored), best first: a column named like ``email`` wins
#: over one named ``address`` (which may be a postal address) or ``to``.
ADDRESS_HEADERS: tuple[frozenset[str], ...] = (
    frozenset(
        {"email", "emails", "emailaddress", "mail", "mailaddress", "이메일", "이메일주소", "메일"}
    ),
    frozenset({"recipient", "recipients", "address", "to", "받는사람", "수신자"}),
)
_DELIMITERS = ",;\t"
_SNIFF_BYTES = 64 * 1024


@dataclass(frozen=True, slots=True)
class Problem:
    """One refused row: its line in the file and what is wrong with it."""

    line: int
    message: str

    def __str__(self) -> str:
        return f"line {self.line}: {self.message}"


class BadRows(Exception):
    """The list was refused: every problem found, in file order."""

    def __init__(self, source: str, problems: list[Problem]) -> None:
        self.source = source
        self.problems = problems
        super().__init__(f"{source}: {len(problems)} bad row(s)")


@dataclass(frozen=True, slots=True)
class RecipientList:
    """The distinct recipients of a file, in file order, and how they were read."""

    addresses: list[str]
    rows: int
    duplicates: int
    column: str = field(default="1")
    header: bool = False


def read_recipients(
    path: Path, *, column: str | None = None, encoding: str = "utf-8-sig"
) -> RecipientList:
    """Read and check ``path`` (see the module docstring). Raises :class:`BadRows` or OSError."""
    return parse_recipients(path.read_bytes(), source=str(path), column=column, encoding=encoding)


def parse_recipients(
    data: bytes, *, source: str = "<list>", column: str | None = None, encoding: str = "utf-8-sig"
) -> RecipientList:
    if encoding.replace("-", "").replace("_", "").lower() in {"utf8", "utf8sig"}:
        encoding = "utf-8-sig"  # a BOM is never part of the first address
    try:
        text = data.decode(encoding)
    except UnicodeDecodeError as e:
        line = data[: e.start].count(b"\n") + 1
        hint = (
            "save it as 'CSV UTF-8', or pass --encoding cp949 for a Korean Excel file"
            if encoding == "utf-8-sig"
            else f"check --encoding {encoding}"
        )
        problem = Problem(line, f"the file is not valid {encoding} text; {hint}")
        raise BadRows(source, [problem]) from e
    except LookupError as e:
        raise BadRows(source, [Problem(0, f"unknown encoding {encoding!r}")]) from e
    del data  # the text is all that is read from now on (the caller's bytes are its own)

    reader = csv.reader(_lines(text), dialect=_dialect(text))
    problems: list[Problem] = []
    addresses: dict[str, str] = {}
    rows = duplicates = 0
    index: int | None = None
    header = False
    column_name = "1"
    previous_line = 0
    try:
        for cells in reader:
            line, previous_line = previous_line + 1, reader.line_num
            if not any(cell.strip() for cell in cells):
                continue
            first = index is None
            if index is None:
                index, header, column_name = _choose_column(cells, column, line, problems)
                if index is None:
                    break
                if header:
                    continue
            rows += 1
            address = cells[index].strip() if index < len(cells) else ""
            refused = check_address(address)
            if refused:
                if first and "@" not in address:
                    refused += f"; {_header_hint(column)}"
                problems.append(Problem(line, refused))
                continue
            key = address_key(address)
            if key in addresses:
                duplicates += 1
            else:
                addresses[address if key == address else key] = address
    except csv.Error as e:
        problems.append(Problem(reader.line_num, f"not readable as CSV ({e})"))
    if problems:
        raise BadRows(source, problems)
    if not addresses:
        raise BadRows(source, [Problem(max(previous_line, 1), "no recipients in the file")])
    return RecipientList(list(addresses.values()), rows, duplicates, column_name, header)


def check_address(address: str) -> str | None:
    """Why ``address`` would be refused by the service, or None if it is fine."""
    if not address:
        return "no address in this row"
    if any(c in address for c in "\r\n\u2028\u2029\x85\x0b\x0c"):
        return f"{address!r} contains a line break"
    try:
        validate_email(address, check_deliverability=False, allow_smtputf8=False)
    except EmailNotValidError as e:
        return f"{address!r} is not a valid email address ({e})"
    return None


def address_key(address: str) -> str:
    """How the service tells recipients apart (its ``sendmail/contract/addresses.py``):
    lower-cased, the domain in its ASCII form — ``a@bücher.de`` and ``a@xn--bcher-kva.de`` are one
    recipient, and ``a@straße.de`` and ``a@strasse.de`` two (``casefold`` would merge them)."""
    local, _, domain = address.rpartition("@")
    if not domain.isascii():
        import idna  # email-validator's own dependency

        with contextlib.suppress(idna.IDNAError):  # no such name: checked and refused before
            domain = idna.encode(domain, uts46=True, std3_rules=False, transitional=False).decode()
    return f"{local}@{domain}".lower()


#: A line and its end, as a file opened with ``newline=""`` gives them (``\r\n``, ``\r`` or
#: ``\n`` kept: the CSV reader needs them to read a quoted cell across lines).
_LINE = re.compile(r"[^\r\n]*(?:\r\n|\r|\n)|[^\r\n]+\Z")


def _lines(text: str) -> Iterator[str]:
    """The lines of ``text``, one at a time."""
    for match in _LINE.finditer(text):
        yield match.group()


def _dialect(text: str) -> type[csv.Dialect]:
    sample = text[:_SNIFF_BYTES]
    try:
        return csv.Sniffer().sniff(sample, delimiters=_DELIMITERS)
    except csv.Error:
        return csv.excel  # one column (a plain list), or nothing to tell: commas


def _header_key(cell: str) -> str:
    return "".join(c for c in cell.casefold() if c not in " -_.\t")


def _choose_column(
    cells: list[str], wanted: str | None, line: int, problems: list[Problem]
) -> tuple[int | None, bool, str]:
    """(index of the address column, is this row a header, the column's name for messages).

    A row is a header only if it names a column (:data:`ADDRESS_HEADERS`, or ``wanted`` by
    name); a first row of data is never taken for a header, whatever it holds.
    """
    keys = [_header_key(cell) for cell in cells]
    named = [index for names in ADDRESS_HEADERS for index, key in enumerate(keys) if key in names]
    if wanted is not None:
        if wanted.isdigit() and int(wanted) >= 1:
            return int(wanted) - 1, bool(named), wanted
        key = _header_key(wanted)
        if key in keys:
            return keys.index(key), True, wanted
        problems.append(
            Problem(line, f"no column named {wanted!r} in the first row ({', '.join(cells)})")
        )
        return None, False, wanted
    if named:
        return named[0], True, cells[named[0]].strip()
    return 0, False, "1"


def _header_hint(wanted: str | None) -> str:
    """What to do if a refused first row was meant as a header row."""
    if wanted is not None and wanted.isdigit():
        return "a header row? choose the column by its name (--column NAME), not its number"
    return "a header row? name the address column email, or choose it with --column NAME"
