"""Data-subject rights and retention: find, copy and erase one person's data everywhere in a region,
and delete what expired on schedule (PIPL Arts 44-47; 2021 Automobile Data Provisions Art 9)."""

from fleetgate.subjects.footprint import DOMAINS, SubjectError
from fleetgate.subjects.holds import list_holds, place_hold, release_hold
from fleetgate.subjects.requests import all_requests, due_by, open_requests
from fleetgate.subjects.retention import run_retention
from fleetgate.subjects.rights import erase_subject, export_subject, find_subject

__all__ = ["DOMAINS", "SubjectError", "all_requests", "due_by", "erase_subject", "export_subject", "find_subject",
           "list_holds", "open_requests", "place_hold", "release_hold", "run_retention"]
