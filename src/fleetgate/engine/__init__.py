"""Where pipeline stages run: in this process (local, the default) or as Ray Data stages on actors.

A stage splits into work and commit. The work (validate and store a file, de-identify an asset,
classify one) is a `Work`: a class built where the rows are processed, once per process or per
Ray actor (so detector models and rule packs load once per actor), called on batches of rows that
carry paths and blob digests, never frames. The commit (catalog rows and their log facts) stays
with the caller, one writer, batch by batch in input order: so the log's entries, their order and
their batching are the same whichever engine ran the work, and a catalog row never parts from
its fact.
"""

from fleetgate.engine.runner import LocalRunner, Runner, Work, runner_for

__all__ = ["LocalRunner", "Runner", "Work", "runner_for"]
