"""Reason codes: every outcome of a call decision names one. The caller hears it (a prompt
and/or a Q.850 cause that Asterisk maps to a SIP status), the call record keeps its code,
and a metric counts it."""

from __future__ import annotations

from enum import Enum


class Reason(Enum):
    # code is the value; cause is the Q.850 cause the channel is hung up with (Asterisk maps
    # it to SIP: 1 -> 404, 3 -> 404, 21 -> 403, 34 -> 503); prompt is played first if set.
    ROUTED = ("ROUTED", 16, "")
    UNKNOWN_NUMBER = ("UNKNOWN_NUMBER", 1, "ss-noservice")
    NUMBER_NOT_ACTIVE = ("NUMBER_NOT_ACTIVE", 1, "ss-noservice")
    TENANT_SUSPENDED = ("TENANT_SUSPENDED", 21, "ss-noservice")
    NO_DESTINATION = ("NO_DESTINATION", 3, "cannot-complete-as-dialed")
    ALL_DESTINATIONS_FAILED = ("ALL_DESTINATIONS_FAILED", 19, "")
    BLACKLISTED = ("BLACKLISTED", 21, "ss-noservice")
    PIN_FAILED = ("PIN_FAILED", 21, "vm-goodbye")
    REGION_DENIED = ("REGION_DENIED", 21, "ss-noservice")
    CLOSED = ("CLOSED", 16, "")  # time policy: announcement (its own prompt) then hang up
    VOICEMAIL = ("VOICEMAIL", 16, "vm-intro")
    IVR = ("IVR", 16, "")
    EXTENSION_NOT_FOUND = ("EXTENSION_NOT_FOUND", 1, "pbx-invalid")
    NO_ROUTE = ("NO_ROUTE", 3, "cannot-complete-as-dialed")
    CALLER_ID_NOT_OWNED = ("CALLER_ID_NOT_OWNED", 21, "ss-noservice")
    EXTENSION_UNKNOWN = ("EXTENSION_UNKNOWN", 21, "")
    # Prepaid: the enterprise's money or channels, and the fail-closed case.
    NO_BALANCE = ("NO_BALANCE", 21, "ss-noservice")
    CHANNEL_LIMIT = ("CHANNEL_LIMIT", 17, "")  # the package's channels are all in use: busy
    BILLING_UNAVAILABLE = ("BILLING_UNAVAILABLE", 34, "all-circuits-busy-now")
    BALANCE_EXHAUSTED = ("BALANCE_EXHAUSTED", 16, "")  # cut mid-call: no money for the next slice
    # Compliance (dialplan.compliance): the provider's duties on outbound calls.
    CALLING_HOURS = ("CALLING_HOURS", 21, "ss-noservice")  # outside the tenant's calling hours
    CALLEE_FREQUENCY = ("CALLEE_FREQUENCY", 21, "cannot-complete-as-dialed")  # this callee, too often
    OUTBOUND_SUSPENDED = ("OUTBOUND_SUSPENDED", 21, "ss-noservice")  # a monitor's or operator's action
    OUTBOUND_THROTTLED = ("OUTBOUND_THROTTLED", 34, "all-circuits-busy-now")  # over the tenant's pace
    SPEND_CAP = ("SPEND_CAP", 21, "ss-noservice")  # the day's spend cap (toll fraud); cuts live calls too
    # A transfer (DTMF #1/*2, SIP REFER) to a target the transferring party may not reach.
    TRANSFER_NOT_ALLOWED = ("TRANSFER_NOT_ALLOWED", 21, "cannot-complete-as-dialed")
    # A customer's PBX trunk (issue 20) holds no registration: its calls fail over (the
    # number's other destinations, its voicemail) with this reason; with nowhere else, 480.
    PBX_UNREGISTERED = ("PBX_UNREGISTERED", 20, "")
    # Set by the dialplan itself when the control plane cannot be reached.
    CONTROL_PLANE_UNAVAILABLE = ("CONTROL_PLANE_UNAVAILABLE", 34, "all-circuits-busy-now")

    def __init__(self, code: str, cause: int, prompt: str) -> None:
        self.code = code
        self.cause = cause
        self.prompt = prompt
