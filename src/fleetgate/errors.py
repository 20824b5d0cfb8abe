"""One error hierarchy for fleetgate.

    FleetgateError                 exit 1   anything fleetgate raises on purpose
    ├── UsageError                 exit 2   a bad argument, option or request
    │   ├── ConfigError            exit 2   fleetgate.toml is missing or wrong
    │   └── NotFoundError          exit 2   no asset, plan or credential with that id
    ├── InvalidInputError          exit 2   a whole input is unusable (an empty drop, a missing path)
    ├── ItemError                  (n/a)    one item of a batch is bad; the item is quarantined
    │   ├── UnsafePathError                 absolute path, '..', symlink escape, odd characters
    │   ├── MediaError                      video or audio that does not probe or decode
    │   ├── TableError                      Parquet that does not read or lacks columns
    │   └── ValueRangeError                 impossible values: lat=200, NaN time, time going back
    ├── IntegrityError             exit 4   the catalog or log differs from what the log vouches for
    └── StoreError                 exit 5   the blob store or catalog failed (may be transient)

`ItemError`s never stop a batch: the pipeline records them in the quarantine with the file and
field they name. Everything else reaches the user as one line through the CLI with its exit code.
"""

from __future__ import annotations

from enum import IntEnum


class ExitCode(IntEnum):
    """Stable process exit codes; `docs/operations.md` documents each."""

    OK = 0
    ERROR = 1
    USAGE = 2
    PARTIAL = 3
    INTEGRITY = 4
    STORE = 5


EXIT_CODE_HELP: dict[ExitCode, str] = {
    ExitCode.OK: "everything succeeded",
    ExitCode.ERROR: "fleetgate failed; the message says why",
    ExitCode.USAGE: "bad arguments, configuration or input as a whole; nothing was changed",
    ExitCode.PARTIAL: "the batch ran but some items were quarantined; see the quarantine",
    ExitCode.INTEGRITY: "the catalog, a key or the log differs from what the log vouches for; nothing left the "
                        "region; `fleetgate audit verify` lists every finding",
    ExitCode.STORE: "the blob store or catalog failed; rerun once it is reachable",
}


class FleetgateError(Exception):
    """Base of every error fleetgate raises on purpose."""

    exit_code: ExitCode = ExitCode.ERROR

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def __str__(self) -> str:
        return self.message


class UsageError(FleetgateError):
    """A bad argument, option or request."""

    exit_code = ExitCode.USAGE


class ConfigError(UsageError):
    """The workspace configuration is missing or wrong."""


class NotFoundError(UsageError):
    """Something asked for by id (an asset, a plan, a credential) that does not exist."""


class InvalidInputError(FleetgateError):
    """An input as a whole cannot be used (for example a drop with no files)."""

    exit_code = ExitCode.USAGE


class ItemError(FleetgateError):
    """One item of a batch is bad; it is quarantined and the batch goes on.

    `path` is the item's path relative to its drop and `field` the part of it at fault
    (a column, a JSON key, 'container', 'name').
    """

    def __init__(self, path: str, field: str, problem: str) -> None:
        self.path = path
        self.field = field
        self.problem = problem
        super().__init__(f"{path}: {field}: {problem}")


class UnsafePathError(ItemError):
    """A name that could escape the drop or the store."""


class MediaError(ItemError):
    """Video or audio that does not probe or decode as its format promises."""


class TableError(ItemError):
    """A Parquet table that does not read or lacks required columns."""


class ValueRangeError(ItemError):
    """Values that cannot be true: coordinates out of range, NaN or backwards time."""


class IntegrityError(FleetgateError):
    """The catalog or the log was changed outside fleetgate; the gate refuses until it is resolved."""

    exit_code = ExitCode.INTEGRITY


class StoreError(FleetgateError):
    """The blob store or the catalog failed."""

    exit_code = ExitCode.STORE
