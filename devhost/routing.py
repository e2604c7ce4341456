"""ASP.NET-style route templates as the Functions host matches them.

Supported: literal segments (case-insensitive), ``{name}``, ``{name?}`` (optional, last),
``{*name}`` (catch-all, last), and the constraints ``int``, ``long``, ``guid``, ``alpha``,
``bool``, ``double``/``float``/``decimal``, ``minlength(n)``, ``maxlength(n)``,
``length(n)``, ``regex(...)``.
"""

from __future__ import annotations

import re
from urllib.parse import unquote

_GUID = r"[0-9a-fA-F]{8}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{12}"
_CONSTRAINTS = {
    "int": r"-?\d+",
    "long": r"-?\d+",
    "guid": _GUID,
    "alpha": r"[A-Za-z]+",
    "bool": r"(?i:true|false)",
    "double": r"-?\d+(?:\.\d+)?",
    "float": r"-?\d+(?:\.\d+)?",
    "decimal": r"-?\d+(?:\.\d+)?",
}
_PARAM = re.compile(r"^\{(?P<star>\*)?(?P<name>[A-Za-z_][A-Za-z0-9_]*)(?P<rest>[^}]*)\}$")


def _constraint_pattern(spec: str) -> str:
    pattern = r"[^/]+"
    for part in filter(None, spec.split(":")):
        lowered = part.lower()
        if lowered in _CONSTRAINTS:
            pattern = _CONSTRAINTS[lowered]
        elif m := re.fullmatch(r"(min|max)?length\((\d+)(?:,(\d+))?\)", lowered):
            kind, low, high = m.groups()
            if kind == "min":
                pattern = rf"[^/]{{{low},}}"
            elif kind == "max":
                pattern = rf"[^/]{{0,{low}}}"
            else:
                pattern = rf"[^/]{{{low},{high or low}}}"
        elif m := re.fullmatch(r"regex\((.*)\)", part):
            pattern = m.group(1)
    return pattern


class RouteTemplate:
    """A compiled route template, e.g. ``api/v1/emails/{id:guid}``."""

    def __init__(self, template: str) -> None:
        self.template = template.strip("/")
        parts: list[str] = []
        literals = 0
        params = 0
        for segment in filter(None, self.template.split("/")):
            m = _PARAM.match(segment)
            if not m:
                parts.append("/" + re.escape(segment))
                literals += 1
                continue
            params += 1
            name, rest = m.group("name"), m.group("rest")
            optional = rest.endswith("?")
            rest = rest.rstrip("?")
            if m.group("star"):
                parts.append(f"(?:/(?P<{name}>.*))?")
            elif optional:
                parts.append(f"(?:/(?P<{name}>{_constraint_pattern(rest)}))?")
            else:
                parts.append(f"/(?P<{name}>{_constraint_pattern(rest)})")
        self._regex = re.compile("^" + "".join(parts) + "/?$", re.IGNORECASE)
        # literal routes before parameterised ones, longer before shorter
        self.sort_key = (-literals, params, self.template)

    def match(self, path: str) -> dict[str, str] | None:
        """Route parameters if ``path`` (``/api/...``, percent-encoded) matches."""
        m = self._regex.match("/" + path.strip("/") if path.strip("/") else "")
        if m is None:
            return None
        return {k: unquote(v) for k, v in m.groupdict().items() if v is not None}

    def __repr__(self) -> str:
        return f"RouteTemplate({self.template!r})"
