"""Customer PBX trunks (issue 20): an enterprise's own PBX is a SIP account of device_kind
`pbx` (provisioning/sip.py writes its PJSIP endpoint like any extension's, up to 8
contacts) that owns a range of extensions and the numbers bound to it (kind `pbx`).

What the tenant's packages allow, checked when one is created:
- its channels come from the trunk modules (TRUNK: 1 channel each), less those the
  tenant's other PBX trunks hold;
- the extensions behind it from the extension modules (EXT-1 ... EXT-128, and the
  combined packages' extensions), less those behind its other PBX trunks;
- its range holds none of the tenant's own extensions and overlaps no other PBX's range,
  and no extension is created inside a PBX's range afterwards."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from provisioning.engine import Conflict, Ctx, Invalid, Values

# the subscriptions in force on the tenant's local day, with their packages
_IN_FORCE = """
SELECT coalesce(sum(p.channels) FILTER (WHERE p.kind = 'trunk'), 0) AS channels,
       coalesce(sum(p.extensions) FILTER (WHERE p.kind IN ('extension_module', 'combined')), 0) AS extensions
FROM subscriptions s
JOIN packages p ON p.id = s.package_id
JOIN tenants t ON t.id = s.tenant_id
WHERE s.tenant_id = $1 AND s.state = 'active'
  AND s.starts_on <= ($2 AT TIME ZONE t.timezone)::date
  AND (s.ends_on IS NULL OR s.ends_on >= ($2 AT TIME ZONE t.timezone)::date)
"""


def range_size(first: str, last: str) -> int:
    return int(last) - int(first) + 1


async def check_pbx(ctx: Ctx, values: Values, before: Mapping[str, Any] | None) -> Values:
    """The prepare step of an extension: a PBX trunk's range and channels against the
    tenant's packages; any account against the PBX ranges."""
    assert ctx.tenant_id is not None
    kind = values.get("device_kind") or (before or {}).get("device_kind", "phone")
    if before is not None:
        if values.get("device_kind") == "pbx" and before["device_kind"] != "pbx":
            raise Invalid("an extension cannot become a PBX trunk: create one", "device_kind")
        if before["device_kind"] == "pbx" and values.get("device_kind") not in (None, "pbx"):
            raise Invalid("a PBX trunk cannot become a phone or gateway", "device_kind")
        return values
    first, last, channels = values.get("range_first"), values.get("range_last"), values.get("channels")
    others = await ctx.conn.fetch(
        "SELECT extension, range_first, range_last, channels, device_kind FROM sip_extensions "
        "WHERE tenant_id = $1 FOR UPDATE",
        ctx.tenant_id,
    )
    pbxs = [o for o in others if o["device_kind"] == "pbx"]
    if kind != "pbx":
        for name in ("range_first", "range_last", "channels"):
            if values.get(name) is not None:
                raise Invalid(f"{name} is for a PBX trunk (device_kind pbx) only", name)
        values.pop("range_first", None)
        values.pop("range_last", None)
        values["channels"] = 0
        ext = values["extension"]
        for o in pbxs:
            if len(ext) == len(o["range_first"]) and o["range_first"] <= ext <= o["range_last"]:
                raise Conflict(
                    f"extension {ext} is behind PBX trunk {o['extension']} "
                    f"({o['range_first']}-{o['range_last']})",
                    "extension",
                )
        return values
    if first is None or last is None:
        raise Invalid(
            "a PBX trunk needs the range of extensions behind it",
            "range_first" if first is None else "range_last",
        )
    if len(first) != len(last) or first > last:
        raise Invalid(
            f"range {first}-{last}: two numbers of one length, the first not above the last", "range_last"
        )
    if values.get("fax_allowed"):
        raise Invalid("a PBX trunk carries no fax offer of its own", "fax_allowed")
    allowed = await ctx.conn.fetchrow(_IN_FORCE, ctx.tenant_id, ctx.clock.now())
    held_channels = sum(o["channels"] for o in pbxs)
    free_channels = allowed["channels"] - held_channels
    channels = 1 if channels is None else channels
    if channels > free_channels:
        raise Invalid(
            f"{channels} channels asked; the tenant's trunk modules give {allowed['channels']}, "
            f"{held_channels} of them held by its other PBX trunks",
            "channels",
        )
    held_exts = sum(range_size(o["range_first"], o["range_last"]) for o in pbxs)
    size = range_size(first, last)
    if size > allowed["extensions"] - held_exts:
        raise Invalid(
            f"range {first}-{last} holds {size} extensions; the tenant's extension modules give "
            f"{allowed['extensions']}, {held_exts} of them behind its other PBX trunks",
            "range_last",
        )
    for o in others:
        if o["device_kind"] == "pbx":
            if len(o["range_first"]) == len(first) and o["range_first"] <= last and first <= o["range_last"]:
                raise Conflict(
                    f"range {first}-{last} overlaps PBX trunk {o['extension']} "
                    f"({o['range_first']}-{o['range_last']})",
                    "range_first",
                )
        elif len(o["extension"]) == len(first) and first <= o["extension"] <= last:
            raise Conflict(f"extension {o['extension']} is in range {first}-{last} already", "range_first")
    if len(values["extension"]) == len(first) and first <= values["extension"] <= last:
        raise Invalid("the PBX trunk's own account number is outside its range", "extension")
    values["channels"] = channels
    return values
