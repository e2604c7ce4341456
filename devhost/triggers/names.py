"""Binding expressions as the host resolves them: ``%setting%`` references and queue names."""

from __future__ import annotations

import re
from collections.abc import Mapping

_REFERENCE = re.compile(r"%([^%]+)%")
_QUEUE_NAME = re.compile(r"^[a-z0-9](?:[a-z0-9]|-(?=[a-z0-9])){2,62}$")


class BindingError(ValueError):
    """A binding the host would refuse: the function is not run (the host lists it among the
    functions in error and runs the others)."""


def resolve_settings(text: str, env: Mapping[str, str]) -> str:
    """Replace every ``%name%`` with the app setting ``name`` (``INameResolver.
    ResolveWholeString``); a setting that is not there is a :class:`BindingError`."""

    def setting(match: re.Match[str]) -> str:
        name = match.group(1)
        value = env.get(name)
        if value is None:
            raise BindingError(f"'%{name}%' does not resolve to a value")
        return value

    return _REFERENCE.sub(setting, text)


def queue_name(text: str, env: Mapping[str, str]) -> str:
    """The queue a trigger reads: settings resolved, lower-cased "to be nice" and checked as
    the queue extension does (``QueueTriggerAttributeBindingProvider.NormalizeAndValidate``):
    3 to 63 characters, lower-case letters, digits and single hyphens, starting and ending with
    a letter or digit."""
    name = resolve_settings(text, env).lower()
    if not _QUEUE_NAME.match(name):
        raise BindingError(f"{name!r} is not a valid queue name")
    return name
