"""`fleetgate keys new`, `fleetgate principals add|ls|remove` and `fleetgate config sign|show`."""

from __future__ import annotations

import getpass
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from fleetgate.cli._common import AsOpt, KeyOpt, OutputFormat, actor, console, home_of, open_workspace, print_json
from fleetgate.domain import Role
from fleetgate.errors import UsageError
from fleetgate.gate import sign_config
from fleetgate.gate.trust import decision_settings
from fleetgate.keys.personal import load_public_key, new_key_pair, public_path
from fleetgate.people import add_principal, current_state, list_principals, remove_principal

keys_app = typer.Typer(no_args_is_help=True)
principals_app = typer.Typer(no_args_is_help=True)
config_app = typer.Typer(no_args_is_help=True)
RegionOpt = Annotated[str | None, typer.Option(help="Region (default: the workspace default).")]
FormatOpt = Annotated[OutputFormat, typer.Option("--format", help="table or json.")]


@keys_app.command("new", help="Make your own Ed25519 key pair: FILE (private, 0600) and FILE.pub.")
def keys_new(ctx: typer.Context,
             out: Annotated[Path, typer.Option("--out", help="Private key file; keep it outside the workspace.")],
             passphrase: Annotated[bool, typer.Option(help="Encrypt the private key with a passphrase "
                                                           "(asked twice).")] = False) -> None:
    home = home_of(ctx).resolve()
    target = out.resolve()
    if target == home or home in target.parents:
        raise UsageError(f"--out: {out} is inside the workspace {home}; a personal key stays with its owner, "
                         "outside the workspace")
    secret = None
    if passphrase:
        secret = getpass.getpass("passphrase: ")
        if not secret or secret != getpass.getpass("again: "):
            raise UsageError("--passphrase: the two passphrases differ or are empty")
    key = new_key_pair(out, secret)
    console.print(f"wrote {out} (private, 0600) and {public_path(out)}; key id {key.keyid[:16]}…")


@principals_app.command("add", help="Register a person with a role and their public key (admin-signed, logged).")
def principals_add(ctx: typer.Context, name: Annotated[str, typer.Argument(help="The person's name.")],
                   role: Annotated[Role, typer.Option(help="engineer, compliance, auditor or admin.")],
                   public_key: Annotated[Path, typer.Option("--public-key", help="Their FILE.pub.")],
                   as_: AsOpt = None, key: KeyOpt = None, region: RegionOpt = None) -> None:
    admin = actor(as_, key, "adding a principal")
    with open_workspace(ctx) as ws:
        p = add_principal(ws.region(region), name, role, load_public_key(public_key), admin)
    console.print(f"registered {p.name} as {p.role.value} (key {p.keyid[:16]}…) in log entry {p.added_index}")


@principals_app.command("remove", help="Remove a person (admin-signed, logged); history is not rewritten.")
def principals_remove(ctx: typer.Context, name: Annotated[str, typer.Argument(help="The person's name.")],
                      as_: AsOpt = None, key: KeyOpt = None, region: RegionOpt = None) -> None:
    admin = actor(as_, key, "removing a principal")
    with open_workspace(ctx) as ws:
        p = remove_principal(ws.region(region), name, admin)
    console.print(f"removed {p.name} ({p.role.value}) in log entry {p.removed_index}")


@principals_app.command("ls", help="List the people registered in a region, as the log records them.")
def principals_ls(ctx: typer.Context, region: RegionOpt = None,
                  all_: Annotated[bool, typer.Option("--all", help="Include removed principals.")] = False,
                  fmt: FormatOpt = OutputFormat.table) -> None:
    with open_workspace(ctx) as ws:
        people = list_principals(ws.region(region), include_removed=all_)
    if fmt == OutputFormat.json:
        print_json([p.model_dump(mode="json", exclude={"public_key"}) for p in people])
        return
    table = Table("name", "role", "key id", "added (entry, by)", "removed (entry, by)", title="principals",
                  title_justify="left")
    for p in people:
        removed = f"{p.removed_index}, {p.removed_by}" if p.removed_index is not None else ""
        table.add_row(p.name, p.role.value, p.keyid[:16] + "…", f"{p.added_index}, {p.added_by}", removed)
    console.print(table)


@config_app.command("sign", help="Sign the settings that decide exports (fleetgate.toml, packs) as an admin.")
def config_sign(ctx: typer.Context, as_: AsOpt = None, key: KeyOpt = None, region: RegionOpt = None) -> None:
    admin = actor(as_, key, "signing the configuration")
    with open_workspace(ctx) as ws:
        name = ws.config.region(region).name
        index = sign_config(ws, name, admin)
    console.print(f"signed the settings of region {name} in log entry {index}")


@config_app.command("show", help="The settings that decide exports, and whether they match the signed ones.")
def config_show(ctx: typer.Context, region: RegionOpt = None, fmt: FormatOpt = OutputFormat.table) -> None:
    with open_workspace(ctx) as ws:
        name = ws.config.region(region).name
        settings = decision_settings(ws, name)
        signed = current_state(ws.region(name)).config
    signed_settings = signed[1].settings if signed else {}
    if fmt == OutputFormat.json:
        print_json({"settings": settings, "signed_in_entry": signed[0] if signed else None,
                    "differs": sorted(k for k in settings.keys() | signed_settings.keys()
                                      if settings.get(k) != signed_settings.get(k))})
        return
    table = Table("setting", "value", "signed", title=f"settings of {name}", title_justify="left")
    for k in sorted(settings.keys() | signed_settings.keys()):
        same = settings.get(k) == signed_settings.get(k)
        table.add_row(k, str(settings.get(k)), "yes" if same else "[red]differs[/]")
    console.print(table)
    console.print(f"last signed in log entry {signed[0]} by {signed[1].by}" if signed else
                  "[red]never signed[/]: `fleetgate config sign --as ADMIN --key FILE`")
