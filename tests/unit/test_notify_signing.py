"""Webhook signatures: what a receiver computes from the raw body and the timestamp header
must equal the header, and any change to either breaks it."""

from __future__ import annotations

import hashlib
import hmac

from hypothesis import given, settings
from hypothesis import strategies as st

from softswitch.notify.signing import new_secret, signature, verify

SECRET = "whsec_test-secret"
BODY = b'{"id":"7-3","notice":{"kind":"missed_call"}}'


def test_the_signature_is_hmac_sha256_of_timestamp_dot_body_in_hex() -> None:
    expected = hmac.new(SECRET.encode(), b"1764800000." + BODY, hashlib.sha256).hexdigest()
    assert signature(SECRET, 1764800000, BODY) == "sha256=" + expected


def test_a_receiver_verifies_within_the_tolerance_and_rejects_a_stale_timestamp() -> None:
    header = signature(SECRET, 1000, BODY)
    assert verify(SECRET, "1000", BODY, header, now=1000)
    assert verify(SECRET, "1000", BODY, header, now=1300)
    assert not verify(SECRET, "1000", BODY, header, now=1301)  # a replay, 5 min later
    assert not verify(SECRET, "not a number", BODY, header, now=1000)


@settings(deadline=None)
@given(st.binary(max_size=200), st.integers(min_value=0, max_value=2**40))
def test_changing_the_body_the_timestamp_or_the_secret_breaks_it(extra: bytes, stamp: int) -> None:
    header = signature(SECRET, stamp, BODY)
    assert verify(SECRET, str(stamp), BODY, header, now=stamp)
    if extra:
        assert not verify(SECRET, str(stamp), BODY + extra, header, now=stamp)
    assert not verify(SECRET, str(stamp + 1), BODY, header, now=stamp)
    assert not verify(SECRET + "x", str(stamp), BODY, header, now=stamp)


def test_secrets_are_new_each_time_and_long() -> None:
    a, b = new_secret(), new_secret()
    assert a != b and a.startswith("whsec_") and len(a) >= 40
