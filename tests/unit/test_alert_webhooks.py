"""Alert webhooks without a network: the signature (a vector computed here with ``hmac``, the tolerance's
edges, tampering, secret rotation, malformed headers), the body's exact bytes, how each answer of the
customer's endpoint is treated, and the retry backoff."""

from __future__ import annotations

import hashlib
import hmac
import http.client
import json
from collections.abc import Mapping
from typing import Any

import pytest

from tests.conftest import NOW, make_plan
from tollgate.alerts.webhooks import (
    SIGNATURE_HEADER,
    DeliveryFailedError,
    SignatureError,
    backoff_seconds,
    body_of,
    deliver,
    queue_url,
    sign,
    verify,
)
from tollgate.domain.alerts import CounterChange, crossings
from tollgate.domain.models import AlertWebhook

SECRET = "whsec_" + "a" * 32
OTHER_SECRET = "whsec_" + "b" * 32
T = 1_794_744_000  # 2026-11-15T12:00:00Z
PAYLOAD = b'{"alertId":"acme:2026-11:cap_percent:90","type":"Tollgate Usage Threshold Crossed"}'
WEBHOOK = AlertWebhook(url="https://hooks.acme.test/tollgate?token=abc", secret=SECRET)


def event(customer_id: str = "acme") -> dict[str, Any]:
    """An alert event as EventBridge hands it to the queue (its detail after a JSON round trip)."""
    plan = make_plan(id="capped", credit_limit=100, alerts=[{"cap_percent": 90}])
    (alert,) = crossings(CounterChange(customer_id, "2026-11", NOW, 89, 90), plan, plan.alerts)
    return {
        "version": "0",
        "id": "6a7e8feb-b491-4cf7-a9f1-bf3703467718",
        "detail-type": alert.detail_type,
        "source": "tollgate",
        "account": "123456789012",
        "time": "2026-11-15T12:00:00Z",
        "region": "us-east-1",
        "resources": [],
        "detail": json.loads(json.dumps(alert.event_detail())),
    }


# -- signing ---------------------------------------------------------------------------------------------
def test_the_signature_is_hmac_sha256_of_the_timestamp_a_dot_and_the_body() -> None:
    digest = hmac.new(SECRET.encode(), f"{T}.".encode() + PAYLOAD, hashlib.sha256).hexdigest()

    assert sign(PAYLOAD, SECRET, T) == f"t={T},v1={digest}"
    assert SIGNATURE_HEADER == "Tollgate-Signature"


def test_a_known_vector() -> None:
    # printf '1700000000.{"alertId":"a"}' | openssl dgst -sha256 -hmac whsec_test
    header = "t=1700000000,v1=e544423219b940c48c442480297e19a1ebcd88d514bba2610146e0c2981022de"

    assert sign(b'{"alertId":"a"}', "whsec_test", 1_700_000_000) == header
    verify(b'{"alertId":"a"}', header, "whsec_test", now=1_700_000_000)


@pytest.mark.parametrize("offset", [0, 1, 299, 300, -1, -300])
def test_a_signature_within_the_tolerance_verifies(offset: int) -> None:
    verify(PAYLOAD, sign(PAYLOAD, SECRET, T), SECRET, now=T + offset)


@pytest.mark.parametrize("offset", [301, -301, 86_400])
def test_a_signature_outside_the_tolerance_is_refused(offset: int) -> None:
    with pytest.raises(SignatureError, match="timestamp"):
        verify(PAYLOAD, sign(PAYLOAD, SECRET, T), SECRET, now=T + offset)


def test_the_tolerance_can_be_set() -> None:
    verify(PAYLOAD, sign(PAYLOAD, SECRET, T), SECRET, now=T + 60, tolerance=60)
    with pytest.raises(SignatureError):
        verify(PAYLOAD, sign(PAYLOAD, SECRET, T), SECRET, now=T + 61, tolerance=60)


def test_a_tampered_body_or_timestamp_is_refused() -> None:
    header = sign(PAYLOAD, SECRET, T)
    with pytest.raises(SignatureError, match="no v1 signature matches"):
        verify(PAYLOAD.replace(b"90", b"50"), header, SECRET, now=T)
    with pytest.raises(SignatureError, match="no v1 signature matches"):
        verify(PAYLOAD + b" ", header, SECRET, now=T)
    with pytest.raises(SignatureError, match="no v1 signature matches"):
        verify(PAYLOAD, header.replace(f"t={T}", f"t={T + 1}"), SECRET, now=T)


def test_another_secret_is_refused() -> None:
    with pytest.raises(SignatureError, match="no v1 signature matches"):
        verify(PAYLOAD, sign(PAYLOAD, OTHER_SECRET, T), SECRET, now=T)


def test_any_of_several_v1_signatures_verifies_while_a_secret_is_rotated() -> None:
    old = sign(PAYLOAD, SECRET, T).split(",")[1]
    new = sign(PAYLOAD, OTHER_SECRET, T).split(",")[1]
    header = f"t={T},{old},{new}"

    verify(PAYLOAD, header, SECRET, now=T)
    verify(PAYLOAD, header, OTHER_SECRET, now=T)
    verify(PAYLOAD, f"t={T}, v0=ignored, {new}", OTHER_SECRET, now=T)  # spaces, other schemes
    with pytest.raises(SignatureError):
        verify(PAYLOAD, header, "whsec_" + "c" * 32, now=T)


@pytest.mark.parametrize(
    "header",
    [
        None,
        "",
        "garbage",
        f"t={T}",  # no v1
        "v1=abc",  # no t
        f"t=soon,v1={'0' * 64}",
        f"t=-{T},v1={'0' * 64}",
        f"t={T},t={T},v1={'0' * 64}",  # t twice
        f"t={T},v1={'0' * 64},",  # a trailing comma
        f"t={T};v1={'0' * 64}",
        f"t=١٢٣,v1={'0' * 64}",  # digits, not ASCII ones
    ],
)
def test_a_missing_or_malformed_header_is_refused(header: str | None) -> None:
    with pytest.raises(SignatureError):
        verify(PAYLOAD, header, SECRET, now=T)


def test_a_signature_that_is_not_ascii_is_refused_not_a_crash() -> None:
    with pytest.raises(SignatureError, match="no v1 signature matches"):
        verify(PAYLOAD, f"t={T},v1=é{'0' * 63}", SECRET, now=T)


def test_a_signature_error_is_a_value_error() -> None:
    assert issubclass(SignatureError, ValueError)


# -- the body --------------------------------------------------------------------------------------------
def test_the_body_is_the_detail_and_its_type_as_compact_sorted_json() -> None:
    body = body_of(event())

    assert body == (
        b'{"alertId":"acme:2026-11:cap_percent:90","at":"2026-11-15T12:00:00+00:00","credits":90,'
        b'"customerId":"acme","kind":"usage.threshold","limitCredits":90,"period":"2026-11",'
        b'"rule":"cap_percent:90","threshold":"90 credits (90% of the 100-credit cap)",'
        b'"type":"Tollgate Usage Threshold Crossed"}'
    )
    assert json.loads(body) == {**event()["detail"], "type": "Tollgate Usage Threshold Crossed"}


def test_the_body_is_utf8_not_escaped() -> None:
    alert = event()
    alert["detail"]["threshold"] = "a charge of 100,00 €"

    assert "€".encode() in body_of(alert)


@pytest.mark.parametrize(
    "malformed",
    [
        {},
        {"detail-type": "X"},
        {"detail-type": "X", "detail": {"customerId": "acme"}},
        {"detail": {"alertId": "a"}},
    ],
)
def test_an_event_that_is_no_alert_has_no_body(malformed: dict[str, Any]) -> None:
    with pytest.raises(ValueError, match="not a Tollgate alert event"):
        body_of(malformed)


# -- one delivery ----------------------------------------------------------------------------------------
class Endpoint:
    """The customer's endpoint as :func:`deliver` sees it: each request, and one scripted answer."""

    def __init__(self, answer: int | Exception) -> None:
        self.answer = answer
        self.requests: list[tuple[str, bytes, dict[str, str]]] = []

    def __call__(self, url: str, body: bytes, headers: Mapping[str, str]) -> int:
        self.requests.append((url, body, dict(headers)))
        if isinstance(self.answer, Exception):
            raise self.answer
        return self.answer


def test_a_delivery_is_posted_signed_with_the_alert_id() -> None:
    endpoint = Endpoint(200)

    delivery = deliver(WEBHOOK, event(), now=T, send=endpoint)

    assert (delivery.alert_id, delivery.status, delivery.delivered) == (
        "acme:2026-11:cap_percent:90",
        200,
        True,
    )
    ((url, body, headers),) = endpoint.requests
    assert url == WEBHOOK.url
    assert body == body_of(event())
    assert headers == {
        "Content-Type": "application/json",
        "User-Agent": "Tollgate-Webhooks/1",
        "Tollgate-Signature": sign(body, SECRET, T),
        "Tollgate-Alert-Id": "acme:2026-11:cap_percent:90",
    }
    verify(body, headers[SIGNATURE_HEADER], SECRET, now=T)


@pytest.mark.parametrize("status", [200, 201, 202, 204, 299])
def test_a_2xx_is_delivered(status: int) -> None:
    assert deliver(WEBHOOK, event(), now=T, send=Endpoint(status)).delivered


@pytest.mark.parametrize("status", [301, 302, 307, 400, 401, 403, 404, 410, 413, 422])
def test_a_redirect_or_a_4xx_is_refused_for_good_and_not_retried(status: int) -> None:
    delivery = deliver(WEBHOOK, event(), now=T, send=Endpoint(status))

    assert (delivery.status, delivery.delivered) == (status, False)


@pytest.mark.parametrize("status", [408, 429, 500, 502, 503, 504])
def test_a_408_429_or_5xx_is_retried(status: int) -> None:
    with pytest.raises(DeliveryFailedError, match=f"answered {status}") as failed:
        deliver(WEBHOOK, event(), now=T, send=Endpoint(status))
    assert (failed.value.status, failed.value.alert_id) == (status, "acme:2026-11:cap_percent:90")


@pytest.mark.parametrize(
    "error",
    [
        TimeoutError("timed out"),
        ConnectionRefusedError(111, "refused"),
        http.client.RemoteDisconnected("gone"),
    ],
)
def test_no_answer_is_retried(error: Exception) -> None:
    with pytest.raises(DeliveryFailedError, match=type(error).__name__) as failed:
        deliver(WEBHOOK, event(), now=T, send=Endpoint(error))
    assert failed.value.status is None
    assert SECRET not in str(failed.value)


# -- retries ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("receives", "seconds"), [(0, 30), (1, 30), (2, 60), (3, 120), (4, 240), (5, 480), (6, 900), (50, 900)]
)
def test_the_backoff_doubles_from_30_seconds_up_to_15_minutes(receives: int, seconds: int) -> None:
    assert backoff_seconds(receives) == seconds


def test_the_queue_url_comes_from_the_records_arn_and_the_clients_endpoint() -> None:
    arn = "arn:aws:sqs:eu-west-1:123456789012:tollgate-alert-webhooks"

    assert queue_url(arn, "https://sqs.eu-west-1.amazonaws.com") == (
        "https://sqs.eu-west-1.amazonaws.com/123456789012/tollgate-alert-webhooks"
    )


def test_the_deployed_sender_refuses_plain_http_and_the_alert_is_dropped_not_retried() -> None:
    from tollgate.alerts.webhooks import post_https

    local = AlertWebhook(url="http://127.0.0.1:9001/2018-06-01/runtime", secret=SECRET)  # the runtime API

    delivery = deliver(local, event(), now=1_794_744_000, send=post_https)

    assert (delivery.delivered, delivery.status) == (False, 0)


def test_the_readmes_verification_snippet_accepts_our_signature_and_refuses_a_forged_one() -> None:
    import re
    import time
    from pathlib import Path

    from tollgate.alerts.webhooks import sign

    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    (snippet,) = re.findall(r"```python\n(import hmac, hashlib, time\n.*?)```", readme, re.DOTALL)
    namespace: dict[str, Any] = {}
    exec(snippet, namespace)  # noqa: S102 - the README's own code
    body, now = b'{"alertId":"acme:2026-11:cap_percent:90"}', int(time.time())

    namespace["verify"](body, sign(body, SECRET, now), SECRET)
    with pytest.raises(ValueError, match="not signed by Tollgate"):
        namespace["verify"](body + b" ", sign(body, SECRET, now), SECRET)
    with pytest.raises(ValueError, match="not signed by Tollgate"):
        namespace["verify"](body, sign(body, SECRET, now - 301), SECRET)
