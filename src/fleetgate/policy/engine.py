"""The expression engine behind rule conditions: CEL, compiled once when a pack loads.

Only this module knows which CEL implementation runs. `common-expression-language` (Rust `cel`
crate) is the default; another engine only has to provide `compile()` returning a `Condition`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol

import cel

from fleetgate.errors import UsageError


class ConditionError(UsageError):
    """A condition that does not compile, or that fails or returns a non-boolean when run."""


class Condition(Protocol):
    """A compiled boolean expression."""

    source: str

    def variables(self) -> frozenset[str]:
        """Top-level names the expression reads."""
        ...

    def evaluate(self, context: Mapping[str, Any] | EvalContext) -> bool:
        """Run it; raise ConditionError unless the result is a boolean."""
        ...


class EvalContext:
    """Variables converted to CEL values once and reused by every rule.

    Converting a Python dict to CEL on each call costs more than evaluating most rules, so the
    engine keeps one context per request and replaces only the variables that change.
    """

    def __init__(self, variables: Mapping[str, Any]) -> None:
        self.native = cel.Context(dict(variables))

    def set(self, name: str, value: Any) -> None:
        self.native.add_variable(name, value)


@dataclass(frozen=True)
class CelCondition:
    """A condition compiled by `common-expression-language`."""

    source: str
    program: Any
    _variables: frozenset[str]

    def variables(self) -> frozenset[str]:
        return self._variables

    def evaluate(self, context: Mapping[str, Any] | EvalContext) -> bool:
        try:
            result = self.program.execute(context.native if isinstance(context, EvalContext) else context)
        except Exception as exc:  # the binding raises RuntimeError/TypeError/ValueError
            raise ConditionError(f"`{self.source}`: {exc}") from exc
        if not isinstance(result, bool):
            raise ConditionError(f"`{self.source}`: must be true or false, got {type(result).__name__} {result!r}")
        return result


def new_context(variables: Mapping[str, Any]) -> EvalContext:
    """A reusable evaluation context for the conditions this module compiles."""
    return EvalContext(variables)


def top_level_conjuncts(source: str) -> list[str]:
    """The parts of `a && b && c` at the top level, or [source] when the expression is not such a chain.

    Strings and brackets are skipped; a top-level `||` or `?` (which bind looser than `&&`) means the
    expression is not a plain chain, so it is not split.
    """
    parts, depth, quote, start, i = [], 0, "", 0, 0
    while i < len(source):
        char = source[i]
        if quote:
            if char == "\\":
                i += 1
            elif char == quote:
                quote = ""
        elif char in "'\"":
            quote = char
        elif char in "([{":
            depth += 1
        elif char in ")]}":
            depth -= 1
        elif depth == 0 and (source.startswith("||", i) or char == "?"):
            return [source]
        elif depth == 0 and source.startswith("&&", i):
            parts.append(source[start:i])
            start, i = i + 2, i + 1
        i += 1
    parts.append(source[start:])
    return [part.strip() for part in parts]


def compile_condition(source: str) -> Condition:
    """Compile a CEL expression; a syntax error raises ConditionError with the parser's message."""
    if not isinstance(source, str) or not source.strip():
        raise ConditionError("empty condition")
    try:
        program = cel.compile(source)
    except Exception as exc:
        raise ConditionError(" ".join(str(exc).split())) from exc
    # Names bound inside comprehension macros (the `f` in `exists(f, ...)`) show up as variables;
    # the lint compares against the allowed names, so keep them and let it filter.
    return CelCondition(source=source, program=program, _variables=frozenset(program.variables()))
