"""Keyed pseudonyms and suppression for identifier columns of business tables.

Per column: `hmac` (HMAC-SHA256 with the region's secret; equal values get equal pseudonyms across
tables, so joins keep working in the region and abroad), `suppress` (null), `scrub` (identifiers
inside free text replaced by a placeholder) or `keep`. Defaults come from the PII scan: whole-cell
VINs are pseudonymized; plates, resident IDs, mobiles, emails, names and addresses suppressed;
free text scrubbed. The output is scanned again; if any identifier is left outside a pseudonym column the
table is refused.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from fleetgate.classify.pii_scan import ENTITIES, scan_table
from fleetgate.errors import FleetgateError
from fleetgate.keys.region_keys import pseudonym

ACTIONS = ("hmac", "suppress", "scrub", "keep")
# Whole-cell VINs become keyed pseudonyms (joins keep working); every other identifier is suppressed:
# a plate number abroad adds nothing the VIN pseudonym does not, so it is not kept (data minimisation).
HMAC_ENTITIES = {"vin": "vin"}  # entity -> the feature that stays, pseudonymized
PLACEHOLDER = "[已删除]"  # "[removed]"


class DeidError(FleetgateError):
    """De-identification could not make the data safe; nothing is marked de-identified."""


@dataclass
class TableResult:
    table: pa.Table
    actions: dict[str, str]
    pseudonymized_features: list[str] = field(default_factory=list)
    report: dict[str, Any] = field(default_factory=dict)


def default_actions(table: pa.Table) -> dict[str, str]:
    scan = scan_table(table)
    actions: dict[str, str] = {}
    patterns = {e.name: e.pattern for e in ENTITIES}
    for hit in scan.hits:
        col = table.column(hit.column)
        whole_cell = False
        if hit.entity in patterns:  # the identifier is the whole (trimmed) cell in nearly every row
            full = pc.match_substring_regex(pc.utf8_trim_whitespace(col), f"^(?:{_core(patterns[hit.entity])})$")
            whole_cell = pc.sum(full).as_py() or 0
            whole_cell = whole_cell >= 0.9 * max(1, len(col) - col.null_count)
        if hit.entity == "person_name":
            actions[hit.column] = "suppress"
        elif hit.entity in HMAC_ENTITIES and whole_cell and actions.get(hit.column) in (None, "hmac"):
            actions[hit.column] = "hmac"
        elif whole_cell and actions.get(hit.column) != "scrub":
            actions[hit.column] = "suppress"
        else:
            actions[hit.column] = "scrub"
    for name in table.column_names:
        if name.lower() in ("address", "addr", "地址"):
            actions[name] = "suppress"
    return actions


def _core(pattern: str) -> str:
    """The identifier itself (the `v` group) without the boundary characters around it."""
    start = pattern.index("(?P<v>") + len("(?P<v>")
    depth = 1  # the entity patterns escape no parentheses, so counting them is enough
    for i in range(start, len(pattern)):
        depth += {"(": 1, ")": -1}.get(pattern[i], 0)
        if depth == 0:
            return pattern[start:i]
    raise ValueError(pattern)


def _hmac_column(col: pa.ChunkedArray, key: bytes, domain: str) -> pa.Array:
    values = col.combine_chunks() if isinstance(col, pa.ChunkedArray) else col
    uniques = pc.unique(values.drop_null())
    mapped = pa.array([pseudonym(key, v, domain) for v in uniques.to_pylist()], pa.string())
    return pc.take(mapped, pc.index_in(values, value_set=uniques))


def deidentify_table(table: pa.Table, key: bytes, actions: dict[str, str] | None = None) -> TableResult:
    actions = dict(default_actions(table) if actions is None else actions)
    bad = {c: a for c, a in actions.items() if a not in ACTIONS or c not in table.column_names}
    if bad:
        column, action = next(iter(bad.items()))
        raise DeidError(f"column {column!r}: unknown column or action {action!r} (actions: {', '.join(ACTIONS)})")
    scan_before = {h.column: h.entity for h in scan_table(table).hits}
    out = table
    features: set[str] = set()
    # Scrubbing may over-match (a mobile-like run inside a longer number): it removes, never keeps.
    scrub_pattern = "|".join(f"(?:{_core(e.pattern)})" for e in ENTITIES)
    for column, action in actions.items():
        index = out.schema.get_field_index(column)
        col = out.column(column)
        if action == "hmac":
            domain = scan_before.get(column, column)
            out = out.set_column(index, column, _hmac_column(col, key, domain))
            features.add(HMAC_ENTITIES.get(domain, "vin"))
        elif action == "suppress":
            out = out.set_column(index, column, pa.nulls(out.num_rows, col.type))
        elif action == "scrub":
            out = out.set_column(index, column, pc.replace_substring_regex(col, scrub_pattern, PLACEHOLDER))
    hmac_columns = {c for c, a in actions.items() if a == "hmac"}
    left = [h for h in scan_table(out).hits if h.column not in hmac_columns]
    if left:
        raise DeidError(f"column {left[0].column!r}: {left[0].matches} {left[0].entity} values remain after "
                        "de-identification; set an action for it")
    return TableResult(out, actions, sorted(features), {"rows": out.num_rows, "actions": actions})
