"""Tamper-evident audit: an RFC 6962 Merkle transparency log, signed checkpoints and a witness."""

from fleetgate.audit.log import Checkpoint, LogError, TransparencyLog, canonical, digest, open_log
from fleetgate.audit.witness import Witness, WitnessRefused, verify_cosignature

__all__ = ["Checkpoint", "LogError", "TransparencyLog", "Witness", "WitnessRefused", "canonical", "digest", "open_log",
           "verify_cosignature"]
