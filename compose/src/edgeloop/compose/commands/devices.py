"""`edgeloop devices`: register, list, revoke devices and rotate their tokens (registry)."""

from __future__ import annotations

from datetime import UTC, datetime

import click
from edgeloop.compose.commands._registry import registry, show_time
from edgeloop.compose.endpoints import state_dir
from edgeloop.compose.stack.spools import read_spools
from edgeloop.compose.stack.topology import Topology
from edgeloop.compose.views import Listing, output_option, show_listings, timestamp
from edgeloop.compose.views import short_time as show_iso
from edgeloop.contracts.registry.v1 import device_pb2
from edgeloop.contracts.registry.v1 import registry_service_pb2 as pb
from edgeloop.platform.gateway_status import (
    FleetContact,
    clock_offset_text,
    fleet_contacts,
    is_clock_off,
)


@click.group("devices")
def command() -> None:
    """Devices allowed to stream, and their tokens."""


def _print_token(device: device_pb2.Device, token: str) -> None:
    click.echo(f"device_id: {device.device_id}")
    click.echo(f"token:     {token}")
    click.echo("The token is shown only this once: store it on the device now "
               "(EDGELOOP_DEVICE_TOKEN).", err=True)


@command.command("add")
@click.argument("name", default="")
@click.option("--id", "device_id", default="", help="device id (default: generated)")
@click.option("--deployment", default="", help="assign the device to this deployment")
def add(name: str, device_id: str, deployment: str) -> None:
    """Register a device; prints its id and token (shown once)."""
    with registry() as reg:
        reply = reg.RegisterDevice(pb.RegisterDeviceRequest(
            name=name, device_id=device_id, deployment=deployment))
    _print_token(reply.device, reply.token)


@command.command("list")
@click.option("--all", "include_revoked", is_flag=True, help="include revoked devices")
@output_option
def list_devices(include_revoked: bool, output: str) -> None:
    """List devices; with the local stack's gateways, also the streams each device holds open
    and its last contact (what the gateways' status files say, also while its frames go
    unrecorded)."""
    with registry() as reg:
        reply = reg.ListDevices(pb.ListDevicesRequest(include_revoked=include_revoked))
    contacts = _gateway_contacts()
    rows = [{"device": d.device_id, "name": d.name, "deployment": d.deployment,
             "state": "revoked" if d.revoked else "active",
             "created": timestamp(d.created_at), "token_issued": timestamp(d.token_rotated_at)}
            for d in reply.devices]
    states = {"revoked": "[red]revoked[/red]", "active": "[green]active[/green]"}
    columns = ["device", "name", "deployment", "state", "created", "token_issued"]
    if contacts:
        columns += ["streams", "fps", "last_contact", "clock_offset_s"]
        for row in rows:
            contact = contacts.get(row["device"])
            row["streams"] = contact.streams if contact else 0
            row["fps"] = round(contact.fps, 1) if contact else 0.0
            row["last_contact"] = _iso(contact.last_contact) if contact else None
            offset = contact.clock_offset_s if contact else None
            row["clock_offset_s"] = round(offset, 3) if offset is not None else None
    show_listings([Listing("devices", "devices", columns, rows,
                           {"state": states.get, "created": show_iso,
                            "token_issued": show_iso, "streams": str, "fps": str,
                            "last_contact": show_iso, "clock_offset_s": _show_clock})], output)


def _show_clock(offset_s: float | None) -> str:
    """In step, or how far off (in amber beyond ``gateway_status.CLOCK_OFF_S``)."""
    if offset_s is None:
        return "-"
    text = clock_offset_text(offset_s)
    return f"[yellow]{text}[/yellow]" if is_clock_off(offset_s) else text


def _gateway_contacts() -> dict[str, FleetContact]:
    """Each device's contact as the local stack's gateways last wrote it (none: no stack)."""
    reports = read_spools(Topology.from_env(state_dir()), [])
    return fleet_contacts(report.status for report in reports if report.status is not None)


def _iso(unix_seconds: float) -> str:
    return datetime.fromtimestamp(unix_seconds, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@command.command("revoke")
@click.argument("device_id")
def revoke(device_id: str) -> None:
    """Revoke a device: it may no longer stream."""
    with registry() as reg:
        reply = reg.RevokeDevice(pb.RevokeDeviceRequest(device_id=device_id))
    click.echo(f"revoked {reply.device.device_id} at {show_time(reply.device.revoked_at)}")


@command.command("rotate")
@click.argument("device_id")
def rotate(device_id: str) -> None:
    """Issue a new token for a device; the old one stops working at once."""
    with registry() as reg:
        reply = reg.RotateDeviceToken(pb.RotateDeviceTokenRequest(device_id=device_id))
    _print_token(reply.device, reply.token)
