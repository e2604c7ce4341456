"""The Bicep compiler's deploy-time-constant rule, over the tree-sitter parse tree.

Some places in a template need a value that ARM can compute when the deployment *starts*, before
any resource exists: the source of a ``for`` loop (error BCP178), an ``if`` condition (BCP177),
and the name, scope, parent, location, tags, sku... of a resource or module (BCP120). The
compiler refuses a template that puts a run-time value there — for example
``applicationInsights.properties.ConnectionString`` of an ``existing`` resource — also when the
value only reaches the place through a chain of variables. ``az bicep build`` would say so; this
module says the same without the compiler.

How the compiler decides (Azure/bicep, src/Bicep.Core/TypeSystem/):

- DeployTimeConstantContainerVisitor.cs: the containers are every ``for`` (ForSyntax), every
  ``if`` (IfConditionSyntax) and every property whose type is flagged DeployTimeConstant; the
  bodies of ``existing`` resources are skipped.
- DeployTimeConstantValidator.cs: in a ``for``, the source expression is checked; when the
  ``for`` is the value of a variable, its body too.
- DeployTimeConstantDirectViolationVisitor.cs / ...IndirectViolationVisitor.cs: a violation is a
  property of a resource or module that is not readable at deploy time, a whole resource or module
  used as a value inside a ``for`` or ``if``, or a function that must be inlined (``reference``,
  ``list*``); variables are followed through their whole declaration.
- Providers/Az/AzResourceTypeProvider.cs: ``ReadWriteDeployTimeConstantPropertyNames`` — id,
  name, type, apiVersion — are the only resource properties readable at deploy time;
  ``WriteOnlyDeployTimeConstantPropertyNames`` (location, kind, subscriptionId, resourceGroup,
  managedBy, extendedLocation, zones, plan, sku, identity, managedByExtended, tags), with name,
  scope and parent, must be given deploy-time constants. A module's only such property is name
  (its outputs are run-time values).

Parameters are deploy-time constants inside their file, whatever the caller passed: a module is a
nested deployment that receives evaluated values. That is why passing a run-time value into a
module as a parameter is the way around the rule (and what Microsoft's Flex samples do).
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass

from tree_sitter import Node

from tests.infra.bicep import BicepFile, Project, call_name, significant, text, unwrap

#: Resource properties readable at the start of the deployment (AzResourceTypeProvider.cs).
READABLE_RESOURCE_PROPERTIES = frozenset({"id", "name", "type", "apiVersion"})
#: Module properties readable at the start (the module type's ``name``).
READABLE_MODULE_PROPERTIES = frozenset({"name"})
#: Top-level resource properties that must be deploy-time constants (BCP120).
CONSTANT_RESOURCE_PROPERTIES = frozenset(
    {
        "name",
        "scope",
        "parent",
        "location",
        "kind",
        "subscriptionId",
        "resourceGroup",
        "managedBy",
        "extendedLocation",
        "zones",
        "plan",
        "sku",
        "identity",
        "managedByExtended",
        "tags",
    }
)
CONSTANT_MODULE_PROPERTIES = frozenset({"name", "scope"})
#: Properties that take a whole resource as their value (scope: storage, parent: vault).
_RESOURCE_VALUED = frozenset({"scope", "parent"})
#: Functions evaluated only once resources exist (FunctionFlags.RequiresInlining).
_RUNTIME_FUNCTIONS = re.compile(r"^(reference|list[A-Za-z]*)$")


@dataclass(frozen=True)
class Violation:
    code: str
    where: str
    container: str
    reason: str
    chain: tuple[str, ...]

    def __str__(self) -> str:
        via = f" (through {' -> '.join(self.chain)})" if self.chain else ""
        return (
            f"{self.where}: {self.code}: {self.container} needs a value known at the start of "
            f"the deployment; {self.reason}{via}"
        )


def check_deploy_time_constants(project: Project) -> list[str]:
    """Every place the compiler requires a deploy-time constant gets one (BCP120/177/178)."""
    return [str(v) for f in project.files.values() for v in violations(f)]


def violations(bicep_file: BicepFile) -> Iterator[Violation]:
    for container, code, label, allow_whole in _containers(bicep_file):
        for expression in container:
            reason = _runtime_use(bicep_file, expression, allow_whole, (), set())
            if reason is not None:
                why, chain = reason
                line = expression.start_point[0] + 1
                yield Violation(code, f"{bicep_file.path}:{line}", label, why, chain)


def _containers(bicep_file: BicepFile) -> Iterator[tuple[list[Node], str, str, bool]]:
    """(expressions to check, error code, label, whole resources allowed) per container."""
    existing = {r.node.id for r in bicep_file.resources if r.existing}
    for node in _walk_skipping(bicep_file.root, existing):
        if node.type == "for_statement":
            source = _for_source(node)
            checked = [source] if source is not None else []
            parent = node.parent
            if parent is not None and parent.type == "variable_declaration":
                body = node.child_by_field_name("body")
                if body is not None:
                    checked.append(body)
            yield checked, "BCP178", f"the for-expression {text(node)[:50]!r}", False
        elif node.type == "if_statement":
            condition = significant(node)[0]
            yield [condition], "BCP177", f"the if-condition {text(condition)[:50]!r}", False
    for resource in bicep_file.resources:
        if resource.existing:
            continue
        yield from _constant_properties(resource.body, CONSTANT_RESOURCE_PROPERTIES, "resource")
    for module in bicep_file.modules:
        yield from _constant_properties(module.body, CONSTANT_MODULE_PROPERTIES, "module")


def _constant_properties(
    body: Node, names: frozenset[str], what: str
) -> Iterator[tuple[list[Node], str, str, bool]]:
    body = unwrap(body)
    if body.type != "object":
        return
    for prop in significant(body):
        if prop.type != "object_property":
            continue
        key = text(significant(prop)[0]).strip("'")
        if key in names:
            value = significant(prop)[-1]
            label = f"the {what} property {key!r}"
            yield [value], "BCP120", label, key in _RESOURCE_VALUED


def _walk_skipping(node: Node, skipped: set[int]) -> Iterator[Node]:
    stack = [node]
    while stack:
        current = stack.pop()
        if current.id in skipped:
            continue
        yield current
        stack.extend(reversed(current.children))


def _for_source(node: Node) -> Node | None:
    """The expression after ``in``."""
    seen_in = False
    for child in node.children:
        if seen_in and child.is_named and child.type != "comment":
            return child
        if child.type == "in":
            seen_in = True
    return None


def _runtime_use(
    bicep_file: BicepFile,
    node: Node,
    allow_whole: bool,
    chain: tuple[str, ...],
    seen: set[str],
) -> tuple[str, tuple[str, ...]] | None:
    """Why ``node`` cannot be computed at the start (with the variables it went through)."""
    node = unwrap(node)
    kind = node.type
    if kind == "object_property":
        return _runtime_use(bicep_file, significant(node)[-1], allow_whole, chain, seen)
    if kind in {"member_expression", "subscript_expression"}:
        access = _symbol_access(node)
        if access is not None and (
            _is_resource(bicep_file, access[0]) or bicep_file.module(access[0]) is not None
        ):
            symbol, prop = access
            reason = _property_reason(bicep_file, symbol, prop)
            if reason is not None:
                return reason, chain
            # a readable property (id, name...): only the index of a subscript can still matter
            if kind == "subscript_expression":
                index = node.child_by_field_name("index")
                if index is not None:
                    return _runtime_use(bicep_file, index, False, chain, seen)
            return None
    if kind == "call_expression":
        name = call_name(node)
        if _RUNTIME_FUNCTIONS.match(name):
            return f"{name}() is evaluated at run time", chain
        function = node.child_by_field_name("function")
        parts = [c for c in significant(node) if c is not function]
        if function is not None and function.type == "member_expression":
            target = function.child_by_field_name("object")
            if target is not None:
                parts.append(target)
        return _first_reason(bicep_file, parts, False, chain, seen)
    if kind == "identifier":
        name = text(node)
        if name in bicep_file.vars:
            if name in seen:
                return None
            value = bicep_file.vars[name].value
            return _runtime_use(bicep_file, value, allow_whole, (*chain, name), seen | {name})
        if _is_resource(bicep_file, name) or bicep_file.module(name) is not None:
            if allow_whole and bicep_file.module(name) is None:
                return None
            return f"the whole of {name} is only known at run time", chain
        return None  # a parameter, a loop variable or a function's name
    if kind == "for_statement":
        # a nested loop: its source and body are values of the enclosing expression
        source = _for_source(node)
        body = node.child_by_field_name("body")
        parts = [p for p in (source, body) if p is not None]
        return _first_reason(bicep_file, parts, False, chain, seen)
    return _first_reason(bicep_file, significant(node), False, chain, seen)


def _first_reason(
    bicep_file: BicepFile,
    nodes: list[Node],
    allow_whole: bool,
    chain: tuple[str, ...],
    seen: set[str],
) -> tuple[str, tuple[str, ...]] | None:
    for child in nodes:
        reason = _runtime_use(bicep_file, child, allow_whole, chain, seen)
        if reason is not None:
            return reason
    return None


def _symbol_access(node: Node) -> tuple[str, str | None] | None:
    """('storage', 'properties') for storage.properties.x / storage['properties'].x.

    The property is None when it is not a literal (``storage[p]``). None when the expression does
    not start at an identifier (e.g. a call's result).
    """
    first: Node | None = None
    current = node
    while current.type in {"member_expression", "subscript_expression"}:
        first = current
        base = current.child_by_field_name("object")
        if base is None:
            return None
        current = unwrap(base)
    if current.type != "identifier" or first is None:
        return None
    if first.type == "member_expression":
        prop = first.child_by_field_name("property")
        return text(current), (text(prop) if prop is not None else None)
    index = first.child_by_field_name("index")
    literal = _string_literal(index) if index is not None else None
    return text(current), literal


def _string_literal(node: Node) -> str | None:
    node = unwrap(node)
    if node.type != "string":
        return None
    parts = [c for c in node.named_children if c.type != "string_content"]
    if parts:
        return None
    return "".join(text(c) for c in node.named_children)


def _property_reason(bicep_file: BicepFile, symbol: str, prop: str | None) -> str | None:
    if _is_resource(bicep_file, symbol):
        if prop in READABLE_RESOURCE_PROPERTIES:
            return None
        shown = prop if prop is not None else "<computed property>"
        return (
            f"{symbol}.{shown} is a run-time property of a resource "
            "(only id, name, type, apiVersion are known at the start)"
        )
    if bicep_file.module(symbol) is not None:
        if prop in READABLE_MODULE_PROPERTIES:
            return None
        shown = prop if prop is not None else "<computed property>"
        return (
            f"{symbol}.{shown} is a run-time value of a module "
            "(only its name is known at the start)"
        )
    return None


def _is_resource(bicep_file: BicepFile, name: str) -> bool:
    return bicep_file.resource(name) is not None


# ------------------------------------------------------------------------------------------------
# Where a `for` may stand (BCP138)
# ------------------------------------------------------------------------------------------------

#: Declarations whose value may be a loop (Azure/bicep src/Bicep.Core/Emit/
#: ForSyntaxValidatorVisitor.cs: "For-expressions may be used as values of resource, module,
#: variable, and output declarations, or values of resource and module properties").
_LOOP_DECLARATIONS = frozenset(
    {"variable_declaration", "output_declaration", "resource_declaration", "module_declaration"}
)


def check_loop_placement(project: Project) -> list[str]:
    """No property loop inside an expression: ``appSettings: concat([for ...], [...])`` is refused
    (ForSyntaxValidatorVisitor blocks "property for-expression usages in object properties that
    are children of operators or function calls"); a variable's loop is the way to combine one."""
    problems = []
    for bicep_file in project.files.values():
        declarations = [
            n
            for n in significant(bicep_file.root)
            if n.type in {"resource_declaration", "module_declaration"}
        ]
        for declaration in declarations:
            for node in _walk_skipping(declaration, set()):
                if node.type != "for_statement":
                    continue
                parent = node.parent
                while parent is not None and parent.type == "parenthesized_expression":
                    parent = parent.parent
                if parent is None or parent.type in _LOOP_DECLARATIONS | {"object_property"}:
                    continue
                line = node.start_point[0] + 1
                problems.append(
                    f"{bicep_file.path}:{line}: BCP138: a for-expression inside {parent.type} "
                    "(only a declaration's or a property's whole value may be a loop; "
                    "build the list in a variable)"
                )
    return problems
