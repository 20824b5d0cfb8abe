"""Rule packs, the decision engine and the data-subject ledger view.

Packs are YAML files of CEL rules with citations (packs.py); the engine classifies items, counts
subjects and decides an outcome per item (decide.py); the request is a public API (request.py).
"""

from fleetgate.policy.decide import Decision, ItemDecision, PolicyEngine
from fleetgate.policy.packs import Pack, PackError, builtin_pack_ids, load_pack, load_packs
from fleetgate.policy.request import DecisionRequest, Exporter, Item, RequestError, Ytd, parse_request
from fleetgate.policy.vocabulary import Outcome

__all__ = [
    "Decision",
    "DecisionRequest",
    "Exporter",
    "Item",
    "ItemDecision",
    "Outcome",
    "Pack",
    "PackError",
    "PolicyEngine",
    "RequestError",
    "Ytd",
    "builtin_pack_ids",
    "load_pack",
    "load_packs",
    "parse_request",
]
