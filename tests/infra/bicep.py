"""A small read-only model of Bicep files, built on the tree-sitter-bicep parse tree.

It gives the policy checks (``policies.py``) what they need without a Bicep compiler: the
declarations of each file (params with their decorators, vars, resources, modules, outputs),
literal values of expressions where they are literal, and the resolution of identifiers through
variables, parameters and module calls. Anything it cannot evaluate stays an :class:`Expr` (the
source node), so a check can tell "not a literal" from "wrong literal".
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any, TypeAlias

import tree_sitter_bicep
from tree_sitter import Language, Node, Parser, Tree

LANGUAGE = Language(tree_sitter_bicep.language())

_ESCAPES = {"\\'": "'", "\\\\": "\\", "\\n": "\n", "\\r": "\r", "\\t": "\t", "\\$": "$"}


def parse(source: bytes) -> Tree:
    return Parser(LANGUAGE).parse(source)


def text(node: Node) -> str:
    return (node.text or b"").decode("utf-8")


def syntax_errors(tree: Tree) -> list[str]:
    """Every ERROR or MISSING node, as 'line:col: what' (1-based)."""
    errors: list[str] = []
    stack = [tree.root_node]
    while stack:
        node = stack.pop()
        if node.type == "ERROR" or node.is_missing:
            line, col = node.start_point
            kind = f"missing {node.type}" if node.is_missing else "syntax error"
            errors.append(f"{line + 1}:{col + 1}: {kind} near {text(node)[:40]!r}")
        stack.extend(node.children)
    return sorted(errors)


def walk(node: Node) -> Iterator[Node]:
    """The node and all its descendants, depth first."""
    stack = [node]
    while stack:
        current = stack.pop()
        yield current
        stack.extend(reversed(current.children))


def significant(node: Node) -> list[Node]:
    """Named children without comments."""
    return [child for child in node.named_children if child.type != "comment"]


# ------------------------------------------------------------------------------------------------
# Values
# ------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Expr:
    """An expression that is not a literal: kept as its parse-tree node."""

    node: Node

    @property
    def source(self) -> str:
        return text(self.node)

    def __repr__(self) -> str:
        return f"Expr({self.source!r})"


Value: TypeAlias = str | int | bool | dict[str, "Value"] | list["Value"] | Expr | None


def unwrap(node: Node) -> Node:
    while node.type == "parenthesized_expression":
        node = significant(node)[0]
    return node


def string_parts(node: Node) -> list[str | Node]:
    """A string literal as text pieces and interpolation expression nodes, escapes decoded."""
    parts: list[str | Node] = []
    for child in node.named_children:
        if child.type == "string_content":
            parts.append(text(child))
        elif child.type == "escape_sequence":
            parts.append(_ESCAPES.get(text(child), text(child)))
        elif child.type == "interpolation":
            parts.append(significant(child)[0])
    return parts


def string_template(node: Node) -> str | None:
    """A string literal with every interpolation written as ``${...}`` (its source)."""
    node = unwrap(node)
    if node.type != "string":
        return None
    pieces = [p if isinstance(p, str) else "${" + text(p) + "}" for p in string_parts(node)]
    return "".join(pieces)


def property_key(prop: Node) -> str:
    key = significant(prop)[0]
    if key.type == "string":
        return "".join(p for p in string_parts(key) if isinstance(p, str))
    return text(key)


def property_value(prop: Node) -> Node:
    return significant(prop)[-1]


def object_items(node: Node) -> dict[str, Node]:
    """Keys and value nodes of an object literal (empty for anything else)."""
    node = unwrap(node)
    if node.type != "object":
        return {}
    return {
        property_key(prop): property_value(prop)
        for prop in significant(node)
        if prop.type == "object_property"
    }


def get(node: Node | None, *path: str) -> Node | None:
    """Follow object keys through nested object literals."""
    for key in path:
        if node is None:
            return None
        node = object_items(node).get(key)
    return node


def evaluate(node: Node | None) -> Value:
    """The Python value of a literal expression; an :class:`Expr` for anything else."""
    if node is None:
        return None
    node = unwrap(node)
    kind = node.type
    if kind == "string":
        parts = string_parts(node)
        if all(isinstance(p, str) for p in parts):
            return "".join(p for p in parts if isinstance(p, str))
        return Expr(node)
    if kind == "number":
        return int(text(node))
    if kind == "boolean":
        return text(node) == "true"
    if kind == "null":
        return None
    if kind == "object":
        return {key: evaluate(value) for key, value in object_items(node).items()}
    if kind == "array":
        return [evaluate(item) for item in significant(node)]
    return Expr(node)


def identifiers(node: Node) -> set[str]:
    """Names referenced by an expression (identifiers, not property names)."""
    return {text(n) for n in walk(node) if n.type == "identifier"}


def call_name(call: Node) -> str:
    """'listKeys' for listKeys(...) and for x.listKeys(...)."""
    function = call.child_by_field_name("function")
    if function is None:
        return ""
    if function.type == "member_expression":
        prop = function.child_by_field_name("property")
        return text(prop) if prop is not None else ""
    return text(function)


def call_arguments(call: Node) -> list[Node]:
    arguments = call.child_by_field_name("arguments")
    return significant(arguments) if arguments is not None else []


# ------------------------------------------------------------------------------------------------
# Declarations
# ------------------------------------------------------------------------------------------------


@dataclass
class Param:
    name: str
    type: str
    decorators: dict[str, list[Node]]
    default: Node | None
    node: Node

    @property
    def secure(self) -> bool:
        return "secure" in self.decorators or self.type in {"secureString", "secureObject"}

    def allowed(self) -> list[Value]:
        args = self.decorators.get("allowed")
        value = evaluate(args[0]) if args else None
        return value if isinstance(value, list) else []


@dataclass
class Var:
    name: str
    value: Node


@dataclass
class Resource:
    symbol: str
    type: str
    api_version: str
    existing: bool
    condition: Node | None
    loop: bool
    body: Node
    node: Node

    def get(self, *path: str) -> Node | None:
        return get(self.body, *path)


@dataclass
class Module:
    symbol: str
    source: str
    condition: Node | None
    body: Node

    def get(self, *path: str) -> Node | None:
        return get(self.body, *path)


@dataclass
class Output:
    name: str
    type: str
    decorators: dict[str, list[Node]]
    value: Node


@dataclass
class BicepFile:
    path: PurePosixPath
    source: bytes
    tree: Tree
    target_scope: str | None = None
    params: dict[str, Param] = field(default_factory=dict)
    vars: dict[str, Var] = field(default_factory=dict)
    resources: list[Resource] = field(default_factory=list)
    modules: list[Module] = field(default_factory=list)
    outputs: list[Output] = field(default_factory=list)

    @property
    def root(self) -> Node:
        return self.tree.root_node

    def resource(self, symbol: str) -> Resource | None:
        return next((r for r in self.resources if r.symbol == symbol), None)

    def module(self, symbol: str) -> Module | None:
        return next((m for m in self.modules if m.symbol == symbol), None)


def _decorators(node: Node) -> dict[str, list[Node]]:
    found: dict[str, list[Node]] = {}
    for decorator in significant(node):
        call = significant(decorator)[0]
        if call.type == "call_expression":
            found[call_name(call)] = call_arguments(call)
        else:
            found[text(call)] = []
    return found


def _after_equals(node: Node) -> Node | None:
    seen = False
    for child in node.children:
        if seen and child.type != "comment":
            return child
        if child.type == "=":
            seen = True
    return None


def _body(value: Node) -> tuple[Node, Node | None, bool]:
    """(object body, condition, is_loop) of a resource/module value."""
    condition: Node | None = None
    loop = False
    if value.type == "for_statement":
        loop = True
        value = value.child_by_field_name("body") or significant(value)[-1]
    if value.type == "if_statement":
        parts = significant(value)
        condition, value = parts[0], parts[-1]
    return value, condition, loop


def load_source(source: str | bytes, path: str = "main.bicep") -> BicepFile:
    raw = source.encode("utf-8") if isinstance(source, str) else source
    tree = parse(raw)
    model = BicepFile(path=PurePosixPath(path), source=raw, tree=tree)
    pending: dict[str, list[Node]] = {}
    for node in significant(tree.root_node):
        kind = node.type
        if kind == "decorators":
            pending = _decorators(node)
            continue
        named = significant(node)
        if kind == "target_scope_assignment":
            value = evaluate(named[-1])
            model.target_scope = value if isinstance(value, str) else None
        elif kind == "parameter_declaration":
            default = _after_equals(node)
            type_node = next((n for n in named if n.type == "type"), None)
            model.params[text(named[0])] = Param(
                name=text(named[0]),
                type=text(type_node) if type_node is not None else "",
                decorators=pending,
                default=default,
                node=node,
            )
        elif kind == "variable_declaration":
            model.vars[text(named[0])] = Var(name=text(named[0]), value=named[-1])
        elif kind == "resource_declaration":
            declared = evaluate(named[1])
            type_and_version = declared if isinstance(declared, str) else ""
            rtype, _, version = type_and_version.partition("@")
            body, condition, loop = _body(named[-1])
            model.resources.append(
                Resource(
                    symbol=text(named[0]),
                    type=rtype,
                    api_version=version,
                    existing=any(c.type == "existing" for c in node.children),
                    condition=condition,
                    loop=loop,
                    body=body,
                    node=node,
                )
            )
        elif kind == "module_declaration":
            source_value = evaluate(named[1])
            body, condition, _ = _body(named[-1])
            model.modules.append(
                Module(
                    symbol=text(named[0]),
                    source=source_value if isinstance(source_value, str) else "",
                    condition=condition,
                    body=body,
                )
            )
        elif kind == "output_declaration":
            type_node = next((n for n in named if n.type == "type"), None)
            model.outputs.append(
                Output(
                    name=text(named[0]),
                    type=text(type_node) if type_node is not None else "",
                    decorators=pending,
                    value=named[-1],
                )
            )
        pending = {}
    return model


# ------------------------------------------------------------------------------------------------
# A set of files: module calls link them
# ------------------------------------------------------------------------------------------------


class Unresolved(Exception):
    """An expression the model cannot follow to literal keys or values."""


@dataclass
class Project:
    files: dict[PurePosixPath, BicepFile]
    entry: PurePosixPath = field(default_factory=lambda: PurePosixPath("main.bicep"))

    @classmethod
    def load(cls, directory: Path) -> Project:
        files = {
            PurePosixPath(path.relative_to(directory).as_posix()): load_source(
                path.read_bytes(), path.relative_to(directory).as_posix()
            )
            for path in sorted(directory.rglob("*.bicep"))
        }
        return cls(files=files)

    @classmethod
    def from_sources(cls, sources: dict[str, str]) -> Project:
        return cls(files={PurePosixPath(p): load_source(s, p) for p, s in sources.items()})

    @property
    def main(self) -> BicepFile:
        return self.files[self.entry]

    def resources(self) -> Iterator[tuple[BicepFile, Resource]]:
        for bicep_file in self.files.values():
            for resource in bicep_file.resources:
                yield bicep_file, resource

    def module_target(self, caller: BicepFile, module: Module) -> BicepFile | None:
        parts: list[str] = []
        for part in (caller.path.parent / module.source).parts:
            if part == "..":
                parts.pop()
            elif part != ".":
                parts.append(part)
        return self.files.get(PurePosixPath(*parts)) if parts else None

    def callers(self, callee: BicepFile) -> Iterator[tuple[BicepFile, Module]]:
        for bicep_file in self.files.values():
            for module in bicep_file.modules:
                if self.module_target(bicep_file, module) is callee:
                    yield bicep_file, module

    # -- resolution --------------------------------------------------------------------------

    def argument_for(self, bicep_file: BicepFile, param: str) -> list[tuple[BicepFile, Node]]:
        """Where a module parameter's value comes from: the callers' arguments, else the default."""
        found = []
        for caller, module in self.callers(bicep_file):
            argument = module.get("params", param)
            if argument is not None:
                found.append((caller, argument))
        if not found:
            default = bicep_file.params[param].default
            if default is not None:
                found.append((bicep_file, default))
        return found

    def resolve_object(
        self, bicep_file: BicepFile, node: Node
    ) -> dict[str, tuple[BicepFile, Node]]:
        """Every key an object-valued expression can have, with where its value is written.

        Follows object literals, ``union(...)``, both branches of ``?:``, variables, and
        parameters back through the module calls that set them.
        """
        node = unwrap(node)
        if node.type == "object":
            return {key: (bicep_file, value) for key, value in object_items(node).items()}
        if node.type == "call_expression" and call_name(node) == "union":
            merged: dict[str, tuple[BicepFile, Node]] = {}
            for argument in call_arguments(node):
                merged.update(self.resolve_object(bicep_file, argument))
            return merged
        if node.type == "ternary_expression":
            merged = {}
            for branch in ("consequence", "alternative"):
                part = node.child_by_field_name(branch)
                if part is not None:
                    merged.update(self.resolve_object(bicep_file, part))
            return merged
        if node.type == "identifier":
            name = text(node)
            if name in bicep_file.vars:
                return self.resolve_object(bicep_file, bicep_file.vars[name].value)
            if name in bicep_file.params:
                merged = {}
                for origin, argument in self.argument_for(bicep_file, name):
                    merged.update(self.resolve_object(origin, argument))
                return merged
        raise Unresolved(f"{bicep_file.path}: cannot resolve object {text(node)[:60]!r}")

    def resolve_value(self, bicep_file: BicepFile, node: Node) -> Value:
        """A literal through variables, member access on object variables and module params."""
        node = unwrap(node)
        if node.type == "identifier":
            name = text(node)
            if name in bicep_file.vars:
                return self.resolve_value(bicep_file, bicep_file.vars[name].value)
            if name in bicep_file.params:
                origins = self.argument_for(bicep_file, name)
                values = [self.resolve_value(origin, argument) for origin, argument in origins]
                if len(values) == 1:
                    return values[0]
            return Expr(node)
        if node.type == "member_expression":
            obj = node.child_by_field_name("object")
            prop = node.child_by_field_name("property")
            if obj is not None and prop is not None:
                try:
                    items = self.resolve_object(bicep_file, obj)
                except Unresolved:
                    return Expr(node)
                if text(prop) in items:
                    origin, value = items[text(prop)]
                    return self.resolve_value(origin, value)
            return Expr(node)
        return evaluate(node)

    def depends_on(self, bicep_file: BicepFile, node: Node, names: set[str]) -> bool:
        """Whether the expression uses any of ``names`` (params/vars), through variables."""
        seen: set[str] = set()
        pending = list(identifiers(node))
        while pending:
            name = pending.pop()
            if name in seen:
                continue
            seen.add(name)
            if name in names:
                return True
            if name in bicep_file.vars:
                pending.extend(identifiers(bicep_file.vars[name].value))
        return False


def secure_params(bicep_file: BicepFile) -> set[str]:
    return {name for name, param in bicep_file.params.items() if param.secure}


_VERSION = re.compile(r"^(\d{4}-\d{2}-\d{2})(-preview|-beta|-alpha|-privatepreview)?$")


def parse_api_version(version: str) -> tuple[str, bool] | None:
    """('2025-03-01', is_preview) or None when malformed."""
    match = _VERSION.match(version)
    return (match.group(1), match.group(2) is not None) if match else None


# ------------------------------------------------------------------------------------------------
# Computing an expression for given parameter values
# ------------------------------------------------------------------------------------------------

_COMPARISONS: dict[str, Callable[[Any, Any], bool]] = {
    "==": lambda a, b: a == b,
    "!=": lambda a, b: a != b,
    "<": lambda a, b: a < b,
    "<=": lambda a, b: a <= b,
    ">": lambda a, b: a > b,
    ">=": lambda a, b: a >= b,
}
_ARITHMETIC: dict[str, Callable[[int, int], int]] = {
    "+": lambda a, b: a + b,
    "-": lambda a, b: a - b,
    "*": lambda a, b: a * b,
    "/": lambda a, b: int(a / b),  # ARM's div truncates toward zero
    "%": lambda a, b: a % b,
}


def compute(
    bicep_file: BicepFile, node: Node, env: dict[str, Value], *, symbolic: bool = False
) -> Value:
    """The value of an expression once its parameters have the values in ``env``.

    Follows variables and understands literals, ``!``, unary ``-``, ``&&``, ``||``, comparisons,
    ``+ - * / %``, ``?:``, member access on objects, ``for`` expressions over arrays, and the
    functions max, min, empty, length, concat, union, items and string: what a policy needs to
    decide, e.g., "is the always-ready count at least 2 whenever the plan is zone-redundant" for
    every value a parameter may take. Anything else (resource properties, other functions,
    parameters missing from ``env``) raises :class:`Unresolved` — or, with ``symbolic``, stays
    an :class:`Expr` (written ``${source}`` inside a string), so that what is known only at run
    time (``identity.properties.clientId``) can sit in a value whose shape is checked. Deciding
    (a condition, a comparison, a function's argument) never takes an :class:`Expr`.
    """
    node = unwrap(node)
    kind = node.type
    if kind in {"number", "boolean", "null"}:
        return evaluate(node)
    if kind == "string":
        pieces = []
        for part in string_parts(node):
            value = (
                part if isinstance(part, str) else compute(bicep_file, part, env, symbolic=symbolic)
            )
            pieces.append(value if isinstance(value, str) else _arm_text(value))
        return "".join(pieces)
    if kind == "array":
        return [compute(bicep_file, item, env, symbolic=symbolic) for item in significant(node)]
    if kind == "object":
        return {
            key: compute(bicep_file, value, env, symbolic=symbolic)
            for key, value in object_items(node).items()
        }
    if kind == "identifier":
        name = text(node)
        if name in env:
            return env[name]
        if name in bicep_file.vars:
            return compute(bicep_file, bicep_file.vars[name].value, env, symbolic=symbolic)
        return _unknown(bicep_file, node, symbolic, f"no value for {name!r}")
    if kind == "member_expression":
        obj = compute(bicep_file, _field(node, "object"), env, symbolic=symbolic)
        prop = text(_field(node, "property"))
        if isinstance(obj, dict) and prop in obj:
            return obj[prop]
        if isinstance(obj, Expr):
            return _unknown(bicep_file, node, symbolic, f"{text(node)[:60]!r} is not known")
        raise Unresolved(f"{bicep_file.path}: no property {prop!r} in {text(node)[:60]!r}")
    if kind == "unary_expression":
        operator = text(node.child_by_field_name("operator") or node)
        argument = node.child_by_field_name("argument")
        value = compute(bicep_file, argument, env) if argument is not None else None
        if operator == "!" and isinstance(value, bool):
            return not value
        if operator == "-" and isinstance(value, int) and not isinstance(value, bool):
            return -value
    if kind == "binary_expression":
        return _compute_binary(bicep_file, node, env)
    if kind == "ternary_expression":
        condition = compute(bicep_file, _field(node, "condition"), env)
        if not isinstance(condition, bool):
            raise Unresolved(f"{bicep_file.path}: condition {text(node)[:60]!r} is not a bool")
        branch = "consequence" if condition else "alternative"
        return compute(bicep_file, _field(node, branch), env, symbolic=symbolic)
    if kind == "call_expression":
        return _compute_call(bicep_file, node, env, symbolic)
    if kind == "for_statement":
        return _compute_for(bicep_file, node, env, symbolic)
    raise Unresolved(f"{bicep_file.path}: cannot compute {text(node)[:60]!r}")


def _unknown(bicep_file: BicepFile, node: Node, symbolic: bool, why: str) -> Expr:
    if symbolic:
        return Expr(node)
    raise Unresolved(f"{bicep_file.path}: {why}")


def _field(node: Node, name: str) -> Node:
    child = node.child_by_field_name(name)
    if child is None:
        raise Unresolved(f"no {name} in {text(node)[:60]!r}")
    return child


def _arm_text(value: Value) -> str:
    if isinstance(value, bool):
        return "True" if value else "False"  # ARM's string(true) is 'True'
    if isinstance(value, Expr):
        return "${" + value.source + "}"
    return str(value)


def _compute_binary(bicep_file: BicepFile, node: Node, env: dict[str, Value]) -> Value:
    operator = text(_field(node, "operator"))
    left = compute(bicep_file, _field(node, "left"), env)
    if operator in {"&&", "||"}:
        if not isinstance(left, bool):
            raise Unresolved(f"{bicep_file.path}: {text(node)[:60]!r}: not a bool")
        if (operator == "&&" and not left) or (operator == "||" and left):
            return left  # short-circuit, as ARM does
        right = compute(bicep_file, _field(node, "right"), env)
        if not isinstance(right, bool):
            raise Unresolved(f"{bicep_file.path}: {text(node)[:60]!r}: not a bool")
        return right
    right = compute(bicep_file, _field(node, "right"), env)
    if _holds_expr(left) or _holds_expr(right):
        raise Unresolved(f"{bicep_file.path}: {text(node)[:60]!r} compares a run-time value")
    if operator in _COMPARISONS:
        try:
            return bool(_COMPARISONS[operator](left, right))
        except TypeError as exc:
            raise Unresolved(f"{bicep_file.path}: {text(node)[:60]!r}: {exc}") from exc
    if (
        operator in _ARITHMETIC
        and isinstance(left, int)
        and isinstance(right, int)
        and not isinstance(left, bool)
        and not isinstance(right, bool)
    ):
        return _ARITHMETIC[operator](left, right)
    raise Unresolved(f"{bicep_file.path}: cannot compute {text(node)[:60]!r}")


def _holds_expr(value: Value) -> bool:
    if isinstance(value, Expr):
        return True
    if isinstance(value, list):
        return any(_holds_expr(v) for v in value)
    if isinstance(value, dict):
        return any(_holds_expr(v) for v in value.values())
    return False


def _compute_call(
    bicep_file: BicepFile, node: Node, env: dict[str, Value], symbolic: bool
) -> Value:
    name = call_name(node)
    args = [compute(bicep_file, a, env, symbolic=symbolic) for a in call_arguments(node)]
    if any(isinstance(a, Expr) for a in args):
        return _unknown(bicep_file, node, symbolic, f"{name}(...) of a run-time value")
    ints = all(isinstance(a, int) and not isinstance(a, bool) for a in args)
    if name in {"max", "min"} and args and ints:
        numbers = [a for a in args if isinstance(a, int)]
        return max(numbers) if name == "max" else min(numbers)
    if name == "empty" and len(args) == 1 and not _holds_expr(args[0]):
        return args[0] in (None, "", [], {})
    if name == "length" and len(args) == 1 and isinstance(args[0], str | list | dict):
        return len(args[0])
    if name == "concat" and args and all(isinstance(a, list) for a in args):
        return [item for a in args if isinstance(a, list) for item in a]
    if name == "union" and args and all(isinstance(a, dict) for a in args):
        merged: dict[str, Value] = {}
        for a in args:
            if isinstance(a, dict):
                merged.update(a)
        return merged
    if name == "items" and len(args) == 1 and isinstance(args[0], dict):
        # ARM lists an object's items by key, case-insensitively
        return [{"key": key, "value": args[0][key]} for key in sorted(args[0], key=str.lower)]
    if name == "string" and len(args) == 1 and isinstance(args[0], str | int | bool):
        return _arm_text(args[0])
    return _unknown(bicep_file, node, symbolic, f"cannot compute {name}(...)")


def _compute_for(bicep_file: BicepFile, node: Node, env: dict[str, Value], symbolic: bool) -> Value:
    """``[for x in xs: body]`` and ``[for (x, i) in xs: body]`` over a computed array."""
    names: list[str] = []
    source: Node | None = None
    seen_in = False
    for child in node.children:
        if child.type == "in":
            seen_in = True
        elif not seen_in and child.type == "identifier":
            names = [text(child)]
        elif not seen_in and child.type == "for_loop_parameters":
            names = [text(c) for c in child.named_children]
        elif seen_in and source is None and child.is_named and child.type != "comment":
            source = child
    body = node.child_by_field_name("body")
    if source is None or body is None or not names or body.type == "if_statement":
        raise Unresolved(f"{bicep_file.path}: cannot compute {text(node)[:60]!r}")
    items = compute(bicep_file, source, env, symbolic=symbolic)  # its elements may be run-time
    if not isinstance(items, list):
        raise Unresolved(f"{bicep_file.path}: {text(source)[:60]!r} is not an array")
    found: list[Value] = []
    for index, item in enumerate(items):
        scope = {**env, names[0]: item}
        if len(names) > 1:
            scope[names[1]] = index
        found.append(compute(bicep_file, body, scope, symbolic=symbolic))
    return found
