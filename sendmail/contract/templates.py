"""The template language of personalised sends: variables, with an optional default — nothing else.

A personalised request's ``subject``, ``body`` and ``html`` may hold ``{{ name }}`` and
``{{ name | default("회원") }}``; every other use of ``{{``, and any ``{%`` or ``{#`` (Jinja's
tags and comments), is a syntax error. There are no loops, operators, calls, filters other than
``default`` or attribute access, so a template cannot do work or make output beyond its text and
its values — unlike a sandboxed Jinja2, which folds ``{{ 'a' * 10**7 }}`` into 10 MB at compile
time and runs nested ``range`` loops. This is a renderer of its own, not a grammar check in front
of Jinja2: there is nothing here to escape from.

- :func:`compile_template` parses once (at admission) and raises :class:`TemplateError` with a
  message for the caller: where, and what is allowed.
- :meth:`Template.required` names the variables without a default: each recipient must give
  them (the starter answers 400 naming the variable and a recipient before anything starts).
- :meth:`Template.render` substitutes values — HTML-escaped for the HTML part, never for the
  subject or the text part — and refuses an output over ``max_chars``;
  :meth:`Template.rendered_length` gives that length without rendering (checks at admission).

A default cannot hold ``}}`` (the first ``}}`` closes the expression), and there is no way to
write a literal ``{{``: text that needs one is sent without personalisation.

The send routes compile a personalised request's templates and check every recipient's values
at validation (:mod:`sendmail.contract.models`); the batch activities render them
(:mod:`sendmail.sending.content`).
"""

from __future__ import annotations

import html
import re
from collections.abc import Mapping
from dataclasses import dataclass

#: The most characters a default may have.
MAX_DEFAULT_CHARS = 1000

_OPEN = "{{"
_CLOSE = "}}"
_EXPRESSION = re.compile(
    r"""\s*(?P<name>[A-Za-z_][A-Za-z0-9_]{0,63})\s*
        (?:\|\s*default\s*\(\s*(?P<quote>["'])(?P<default>(?:\\.|(?!(?P=quote)).)*)(?P=quote)\s*\)\s*)?
    """,
    re.VERBOSE | re.DOTALL,
)
_ESCAPES = {"\\\\": "\\", '\\"': '"', "\\'": "'", "\\n": "\n"}
_ALLOWED = 'only {{ name }} and {{ name | default("…") }} are allowed'


class TemplateError(ValueError):
    """The template is not in the language (the message says where and why)."""


class RenderError(ValueError):
    """A value is missing, or the output would be larger than allowed."""


@dataclass(frozen=True, slots=True)
class Variable:
    name: str
    default: str | None = None


@dataclass(frozen=True, slots=True)
class Template:
    parts: tuple[str | Variable, ...]

    @property
    def required(self) -> frozenset[str]:
        """The variables without a default: a recipient must give each of them."""
        return frozenset(
            p.name for p in self.parts if isinstance(p, Variable) and p.default is None
        )

    @property
    def names(self) -> frozenset[str]:
        return frozenset(p.name for p in self.parts if isinstance(p, Variable))

    @property
    def is_literal(self) -> bool:
        return all(isinstance(p, str) for p in self.parts)

    def missing(self, values: Mapping[str, str]) -> list[str]:
        """The required variables ``values`` does not give, in the template's order."""
        required = (p for p in self.parts if isinstance(p, Variable) and p.default is None)
        return list(dict.fromkeys(p.name for p in required if p.name not in values))

    def rendered_length(self, values: Mapping[str, str], *, escape_html: bool = False) -> int:
        """The output's length in characters, without building it."""
        total = 0
        for part in self.parts:
            if isinstance(part, str):
                total += len(part)
                continue
            value = values.get(part.name, part.default)
            if value is None:
                raise RenderError(f"no value for {part.name}")
            total += len(html.escape(value, quote=True) if escape_html else value)
        return total

    def render(
        self, values: Mapping[str, str], *, escape_html: bool = False, max_chars: int | None = None
    ) -> str:
        """The text for one recipient. Values are HTML-escaped when ``escape_html`` (the HTML
        part), never otherwise (the subject, the text part)."""
        out: list[str] = []
        for part in self.parts:
            if isinstance(part, str):
                out.append(part)
                continue
            value = values.get(part.name, part.default)
            if value is None:
                raise RenderError(f"no value for {part.name}")
            out.append(html.escape(value, quote=True) if escape_html else value)
        text = "".join(out)
        if max_chars is not None and len(text) > max_chars:
            raise RenderError(f"the rendered text is longer than {max_chars} characters")
        return text


def compile_template(text: str, *, field: str = "template") -> Template:
    """Parse ``text``; :class:`TemplateError` names the first problem (``field`` says where)."""
    for opener, what in (("{%", "tags"), ("{#", "comments")):
        at = text.find(opener)
        if at >= 0:
            raise TemplateError(f"{field}: {what} ({opener} at character {at + 1}): {_ALLOWED}")
    parts: list[str | Variable] = []
    position = 0
    while True:
        start = text.find(_OPEN, position)
        if start < 0:
            stray = text.find(_CLOSE, position)
            if stray >= 0:
                raise TemplateError(
                    f"{field}: '}}}}' without '{{{{' at character {stray + 1}: {_ALLOWED}"
                )
            if position < len(text):
                parts.append(text[position:])
            return Template(tuple(parts))
        stray = text.find(_CLOSE, position, start)
        if stray >= 0:
            raise TemplateError(
                f"{field}: '}}}}' without '{{{{' at character {stray + 1}: {_ALLOWED}"
            )
        end = text.find(_CLOSE, start + len(_OPEN))
        if end < 0:
            raise TemplateError(f"{field}: '{{{{' at character {start + 1} is never closed")
        inner = text[start + len(_OPEN) : end]
        match = _EXPRESSION.fullmatch(inner)
        if match is None:
            shown = inner.strip()[:40]
            raise TemplateError(
                f"{field}: '{{{{ {shown} }}}}' at character {start + 1}: {_ALLOWED}"
            )
        default = match.group("default")
        if default is not None:
            default = re.sub(r"\\.", lambda m: _ESCAPES.get(m.group(0), m.group(0)), default)
            if len(default) > MAX_DEFAULT_CHARS:
                raise TemplateError(
                    f"{field}: the default at character {start + 1} is longer than "
                    f"{MAX_DEFAULT_CHARS} characters"
                )
        if start > position:
            parts.append(text[position:start])
        parts.append(Variable(match.group("name"), default))
        position = end + len(_CLOSE)
