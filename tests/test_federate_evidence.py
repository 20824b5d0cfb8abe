"""A released model update carries its signed, logged entry; the server trusts nothing else."""

from __future__ import annotations

import base64
import dataclasses

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fleetgate.audit import Checkpoint, open_log
from fleetgate.gate.model_updates import (
    DpSettings,
    EvidenceError,
    UpdateEvidence,
    release_model_update,
    verify_update_evidence,
)
from fleetgate.workspace import Workspace, init_workspace

DIGEST = "ab" * 32


@pytest.fixture(scope="module")
def released(tmp_path_factory: pytest.TempPathFactory) -> tuple[Workspace, UpdateEvidence, bytes]:
    home = tmp_path_factory.mktemp("evidence") / "ws"
    for region in ("cn-shanghai", "global"):
        init_workspace(home, region)
    ws = Workspace.open(home)
    for n in range(4):  # a log with earlier entries, so the proof has a path to check
        release_model_update(ws, "cn-shanghai", "global", update_sha256="cd" * 32, aggregated_samples=10,
                             dp=DpSettings(), run_id="fed-old", round_number=n + 1)
    release = release_model_update(ws, "cn-shanghai", "global", update_sha256=DIGEST, aggregated_samples=4000,
                                   dp=DpSettings(), run_id="fed-1", round_number=2)
    assert release.released and release.evidence is not None
    return ws, release.evidence, ws.keys("cn-shanghai").public_key()


def _verify(evidence: UpdateEvidence, key: bytes, **overrides):
    expected = {"update_sha256": DIGEST, "to_region": "global", "run_id": "fed-1", "round_number": 2, **overrides}
    return verify_update_evidence(evidence, key, **expected)


def test_released_update_evidence_verifies_against_the_regions_log(released) -> None:
    ws, evidence, key = released
    entry, checkpoint = _verify(evidence, key)
    log = open_log(ws, "cn-shanghai")
    assert entry == log.entry(entry["index"]) and entry["released"] is True
    assert checkpoint.size == log.size() and any(cp.root == checkpoint.root for cp in log.checkpoints())
    assert UpdateEvidence.from_record(evidence.to_record()) == evidence  # what a Flower ConfigRecord carries
    log.verify()


def test_refused_update_carries_no_evidence(released) -> None:
    ws, _, _ = released
    refused = release_model_update(ws, "cn-shanghai", "global", update_sha256=DIGEST, aggregated_samples=999,
                                   dp=DpSettings(), run_id="fed-1", round_number=3)
    assert not refused.released and refused.evidence is None


@pytest.mark.parametrize(("overrides", "field"), [
    ({"update_sha256": "ef" * 32}, "update_sha256"),
    ({"to_region": "us-west"}, "to_region"),
    ({"run_id": "fed-2"}, "run_id"),
    ({"round_number": 3}, "round"),
])
def test_evidence_for_another_update_run_round_or_destination_is_refused(released, overrides, field) -> None:
    _, evidence, key = released
    with pytest.raises(EvidenceError, match=f"signed entry's {field}"):
        _verify(evidence, key, **overrides)


def test_evidence_signed_by_another_regions_key_is_refused(released) -> None:
    ws, evidence, _ = released
    other = ws.keys("global").public_key()
    with pytest.raises(EvidenceError, match="signature does not verify"):
        _verify(evidence, other)


def test_a_self_signed_entry_outside_the_log_is_refused(released) -> None:
    """The region key signs an entry that is not in its log: the inclusion proof catches it."""
    ws, evidence, key = released
    forged = evidence.entry.replace('"aggregated_samples":4000', '"aggregated_samples":4001')
    from fleetgate.gate.model_updates import ENTRY_SIGNATURE_CONTEXT

    signature = ws.keys("cn-shanghai").sign(ENTRY_SIGNATURE_CONTEXT + forged.encode())
    with pytest.raises(EvidenceError, match="not included"):
        _verify(dataclasses.replace(evidence, entry=forged, signature=signature), key)


def test_a_checkpoint_of_another_origin_is_refused(released) -> None:
    ws, evidence, key = released
    cp = Checkpoint.parse(evidence.checkpoint)
    with pytest.raises(EvidenceError, match="not signed by region"):
        _verify(dataclasses.replace(evidence, checkpoint=evidence.checkpoint.replace(cp.origin, "fleetgate/global")),
                key)


def _flip(text: str, position: int, bit: int) -> str:
    data = bytearray(text.encode())
    data[position % len(data)] ^= 1 << bit
    return data.decode("utf-8", errors="replace")


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(part=st.sampled_from(["entry", "signature", "checkpoint", "proof"]), position=st.integers(0, 10_000),
       bit=st.integers(0, 7))
def test_any_flipped_bit_in_the_evidence_is_refused(released, part: str, position: int, bit: int) -> None:
    _, evidence, key = released
    if part == "entry":
        changed = dataclasses.replace(evidence, entry=_flip(evidence.entry, position, bit))
    elif part == "signature":
        sig = bytearray(evidence.signature)
        sig[position % len(sig)] ^= 1 << bit
        changed = dataclasses.replace(evidence, signature=bytes(sig))
    elif part == "checkpoint":
        body, _, sigs = evidence.checkpoint.partition("\n\n")
        raw = bytearray(base64.b64decode(sigs.split(" ")[2]))
        target = position % 2
        if target == 0:  # the body (origin, size, root)
            changed = dataclasses.replace(evidence, checkpoint=_flip(body, position, bit) + "\n\n" + sigs)
        else:  # the signature blob
            raw[position % len(raw)] ^= 1 << bit
            line = sigs.split(" ")
            changed = dataclasses.replace(evidence, checkpoint=body + "\n\n" + " ".join(
                [line[0], line[1], base64.b64encode(bytes(raw)).decode() + "\n"]))
    else:
        proof = list(evidence.proof)  # flip a bit of a hash, not of its hex spelling ('a' and 'A' are one digit)
        index = position % len(proof)
        node = bytearray(bytes.fromhex(proof[index]))
        node[(position // len(proof)) % len(node)] ^= 1 << bit
        proof[index] = node.hex()
        changed = dataclasses.replace(evidence, proof=tuple(proof))
    if changed == evidence:
        return
    with pytest.raises(EvidenceError):
        _verify(changed, key)


def test_the_server_takes_only_the_update_its_signed_entry_names(released) -> None:
    """The strategy's check on each reply: the arrays, the sample weight and the region must match."""
    np = pytest.importorskip("numpy")
    pytest.importorskip("flwr", reason="federation needs the [federate] extra (flwr[simulation]==1.41.0)")
    from flwr.app import ConfigRecord, MetricRecord
    from flwr.serverapp.strategy import FedAvg

    from fleetgate.train.federation import (
        FederationSettings,
        ServerSetup,
        _regional_strategy,
        _to_record,
        update_digest,
    )

    ws, _, _ = released
    arrays = {"w": np.arange(6, dtype=np.float32).reshape(2, 3)}
    release = release_model_update(ws, "cn-shanghai", "global", update_sha256=update_digest(arrays),
                                   aggregated_samples=2000, dp=DpSettings(), run_id="fed-9", round_number=1)
    setup = ServerSetup(ws.home, FederationSettings(regions=("cn-shanghai",), run_id="fed-9"),
                        log_key=lambda region: ws.keys(region).public_key())
    strategy = _regional_strategy(FedAvg)(ws=ws, setup=setup, grid=None, node_regions={})

    class Reply:
        def __init__(self, sent: dict, samples: int = 2000, evidence=release.evidence) -> None:
            self.content = {"arrays": _to_record(sent),
                            "metrics": MetricRecord({"num-examples": samples, "gate_seconds": 0.01})}
            if evidence is not None:
                self.content["evidence"] = ConfigRecord(evidence.to_record())

    record = strategy._verified(Reply(arrays), "cn-shanghai", 1)
    assert record["log_index"] == release.log_index and record["source_checkpoint"]["size"] > release.log_index
    with pytest.raises(EvidenceError, match="update_sha256"):
        strategy._verified(Reply({"w": arrays["w"] + 1}), "cn-shanghai", 1)
    with pytest.raises(EvidenceError, match="sample count"):
        strategy._verified(Reply(arrays, samples=20_000), "cn-shanghai", 1)
    with pytest.raises(EvidenceError, match="the node serves eu-frankfurt"):
        strategy._verified(Reply(arrays), "eu-frankfurt", 1)
    with pytest.raises(EvidenceError, match="lacks an update, its evidence"):
        strategy._verified(Reply(arrays, evidence=None), "cn-shanghai", 1)
