"""`fleetgate keys new`, `fleetgate principals add|ls|remove` and `fleetgate config sign|show`."""

from __future__ import annotations

import getpass
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from fleetgate.cli._common import AsOpt, KeyOpt, OutputFormat, actor, console, home_of, open_services, print_json
from fleetgate.domain import Role
from fleetgate.errors import UsageError
from fleetgate.keys.personal import load_public_key, new_key_pair, public_path

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
    with open_services(ctx) as services:
        p = services.principals.add(name, role, load_public_key(public_key), admin, region)
    console.print(f"registered {p.name} as {p.role.value} (key {p.keyid[:16]}…) in log entry {p.added_index}")


@principals_app.command("remove", help="Remove a person (admin-signed, logged); history is not rewritten.")
def principals_remove(ctx: typer.Context, name: Annotated[str, typer.Argument(help="The person's name.")],
                      as_: AsOpt = None, key: KeyOpt = None, region: RegionOpt = None) -> None:
    admin = actor(as_, key, "removing a principal")
    with open_services(ctx) as services:
        p = services.principals.remove(name, admin, region)
    console.print(f"removed {p.name} ({p.role.value}) in log entry {p.removed_index}")


@principals_app.command("ls", help="List the people registered in a region, as the log records them.")
def principals_ls(ctx: typer.Context, region: RegionOpt = None,
                  all_: Annotated[bool, typer.Option("--all", help="Include removed principals.")] = False,
                  fmt: FormatOpt = OutputFormat.table) -> None:
    with open_services(ctx) as services:
        people = services.principals.list(region, include_removed=all_)
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
    with open_services(ctx) as services:
        name = services.ws.config.region(region).name
        index = services.principals.sign_config(admin, name)
    console.print(f"signed the settings of region {name} in log entry {index}")


@config_app.command("show", help="The settings that decide exports, and whether they match the signed ones.")
def config_show(ctx: typer.Context, region: RegionOpt = None, fmt: FormatOpt = OutputFormat.table) -> None:
    with open_services(ctx) as services:
        status = services.principals.config_status(region)
    name, settings, signed_settings = status["region"], status["settings"], status["signed_settings"]
    if fmt == OutputFormat.json:
        print_json({k: status[k] for k in ("settings", "signed_in_entry", "differs")})
        return
    table = Table("setting", "value", "signed", title=f"settings of {name}", title_justify="left")
    for k in sorted(settings.keys() | signed_settings.keys()):
        same = settings.get(k) == signed_settings.get(k)
        table.add_row(k, str(settings.get(k)), "yes" if same else "[red]differs[/]")
    console.print(table)
    console.print(f"last signed in log entry {status['signed_in_entry']} by {status['signed_by']}"
                  if status["signed_in_entry"] is not None else
                  "[red]never signed[/]: `fleetgate config sign --as ADMIN --key FILE`")


@principals_app.command("token", help="Issue a new API token for a principal; it is printed once, on the last line.")
def principals_token(ctx: typer.Context, name: Annotated[str, typer.Argument(help="The principal's name.")],
                     as_: AsOpt = None, key: KeyOpt = None, region: RegionOpt = None) -> None:
    issuer = actor(as_, key, "issuing a token")
    with open_services(ctx) as services:
        issued = services.principals.issue_token(name, issuer, region)
    console.print(f"issued {issued.credential_id} for {name} in log entry {issued.log_index}; the token is shown "
                  "only now (stored as an argon2 hash):", highlight=False)
    typer.echo(issued.secret)


@principals_app.command("password", help="Set a principal's dashboard password (argon2; earlier ones are revoked).")
def principals_password(ctx: typer.Context, name: Annotated[str, typer.Argument(help="The principal's name.")],
                        stdin: Annotated[bool, typer.Option("--password-stdin", help="Read the password from "
                                                                                    "stdin.")] = False,
                        as_: AsOpt = None, key: KeyOpt = None, region: RegionOpt = None) -> None:
    issuer = actor(as_, key, "setting a password")
    if stdin:
        import sys

        password = sys.stdin.readline().rstrip("\n")
    else:
        password = getpass.getpass("password: ")
        if password != getpass.getpass("again: "):
            raise UsageError("the two passwords differ")
    with open_services(ctx) as services:
        issued = services.principals.set_password(name, password, issuer, region)
    console.print(f"set the password of {name} ({issued.credential_id}) in log entry {issued.log_index}")


@principals_app.command("revoke", help="Revoke an API token or password by its id (tok-… or pwd-…).")
def principals_revoke(ctx: typer.Context, credential: Annotated[str, typer.Argument(help="tok-… or pwd-….")],
                      as_: AsOpt = None, key: KeyOpt = None, region: RegionOpt = None) -> None:
    issuer = actor(as_, key, "revoking a credential")
    with open_services(ctx) as services:
        index = services.principals.revoke(credential, issuer, region)
    console.print(f"revoked {credential} in log entry {index}")


@principals_app.command("credentials", help="List the API tokens and passwords of a region (never their secrets).")
def principals_credentials(ctx: typer.Context, region: RegionOpt = None, fmt: FormatOpt = OutputFormat.table) -> None:
    with open_services(ctx) as services:
        rows = services.principals.credentials(region)
    if fmt == OutputFormat.json:
        print_json(rows)
        return
    table = Table("id", "kind", "principal", "issued (entry, by)", "revoked (entry, by)", title="credentials",
                  title_justify="left")
    for r in rows:
        revoked = f"{r['revoked_index']}, {r['revoked_by']}" if r["revoked_index"] is not None else ""
        table.add_row(r["id"], r["kind"], r["name"], f"{r['issued_index']}, {r['issued_by']}", revoked)
    console.print(table)
