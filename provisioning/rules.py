"""Business rules of the service contracts (../shared/MISSION.md), as pure functions."""

from __future__ import annotations

import hashlib
import secrets
from datetime import datetime, timedelta

# Seed 001 §12.4: categories that may not use the service, except for their after-sales line.
FORBIDDEN_CATEGORIES = frozenset(
    {
        "finance",
        "loans",
        "debt_collection",
        "stocks",
        "medicine",
        "health_products",
        "antiques",
        "liquor",
        "tea",
        "beauty",
        "overseas_study",
        "exams",
        "invoice_printing",
        "pos_sales",
    }
)
# Never allowed, not even as an after-sales line.
ALWAYS_FORBIDDEN = frozenset({"government_impersonation"})
# Categories whose onboarding needs an industry licence as well.
LICENSED_CATEGORIES = frozenset({"health_products", "medicine", "air_tickets"})

BASE_DOCUMENTS = (
    "business_licence",
    "legal_person_id",
    "signed_contract",
    "anti_fraud_commitment",
    "phone_bill_proof",
    "destination_real_name_commitment",
)
DOCUMENT_DEADLINE = timedelta(days=7)


def category_refusal(category: str, after_sales_line: bool) -> str | None:
    """Why an enterprise of this category may not be onboarded, or None if it may."""
    if category in ALWAYS_FORBIDDEN:
        return f"business category {category!r} is forbidden on this service"
    if category in FORBIDDEN_CATEGORIES and not after_sales_line:
        return (
            f"business category {category!r} is forbidden except for an after-sales line "
            "(set after_sales_line=true if this number only serves after-sales)"
        )
    return None


def required_documents(entity_kind: str, category: str) -> tuple[str, ...]:
    docs = list(BASE_DOCUMENTS)
    if entity_kind == "sole_trader":
        docs.append("holding_id_photo")
    if category in LICENSED_CATEGORIES:
        docs.append("industry_licence")
    return tuple(docs)


def documents_due(paid_at: datetime | None) -> datetime | None:
    return paid_at + DOCUMENT_DEADLINE if paid_at else None


DEADLINE_WARNING = timedelta(days=2)


def deadline_state(due_at: datetime | None, outstanding: int, now: datetime) -> str:
    """Where a tenant stands against the 7-day onboarding deadline (seed 001): "complete"
    (no document outstanding), "unpaid" (the clock has not started), "overdue",
    "due_soon" (within two days) or "on_time"."""
    if outstanding == 0:
        return "complete"
    if due_at is None:
        return "unpaid"
    if now >= due_at:
        return "overdue"
    if due_at - now <= DEADLINE_WARNING:
        return "due_soon"
    return "on_time"


# Number life cycle: reserved -> pending_approval -> active <-> suspended; any -> released.
NUMBER_TRANSITIONS: dict[str, dict[str, str]] = {
    "submit": {"reserved": "pending_approval"},
    "approve": {"pending_approval": "active"},
    "suspend": {"active": "suspended"},
    "resume": {"suspended": "active"},
    "release": {s: "released" for s in ("reserved", "pending_approval", "active", "suspended")},
}
NUMBER_COOLDOWN = timedelta(days=90)


def next_number_state(action: str, state: str) -> str | None:
    return NUMBER_TRANSITIONS.get(action, {}).get(state)


def mask_id_number(value: str) -> str:
    """ID numbers are kept but never shown whole: 310101199001011234 -> 3101**********1234."""
    if not value:
        return ""
    if len(value) <= 8:
        return value[:1] + "*" * (len(value) - 1)
    return value[:4] + "*" * (len(value) - 8) + value[-4:]


def sip_md5_cred(username: str, realm: str, password: str) -> str:
    """What ps_auths.md5_cred holds for digest auth (RFC 2617 HA1)."""
    return hashlib.md5(f"{username}:{realm}:{password}".encode()).hexdigest()  # noqa: S324


def hash_pin(pin: str, salt: str | None = None) -> str:
    salt = salt or secrets.token_hex(8)
    return f"{salt}${hashlib.sha256((salt + pin).encode()).hexdigest()}"


def pin_matches(pin: str, stored: str) -> bool:
    salt, _, _digest = stored.partition("$")
    return secrets.compare_digest(hash_pin(pin, salt), stored)
