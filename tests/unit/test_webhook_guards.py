"""Webhook guards without services: where a webhook may go, and verifying what arrives."""

from __future__ import annotations

import json
import time
from ipaddress import ip_address

import pytest

from jobcord.scheduler.webhooks import (
    WebhookTargetRefused,
    WebhookVerificationError,
    new_secret,
    parse_networks,
    resolve_target,
    sign,
    verify_webhook,
)

LOOPBACK = parse_networks("127.0.0.0/8")


@pytest.mark.parametrize(
    "url",
    [
        "http://100.64.0.1/hook",  # carrier-grade NAT
        "http://100.100.100.200/latest/meta-data",  # a cloud's metadata service
        "http://198.18.0.1/",  # benchmarking
        "http://192.0.0.8/",  # IETF protocol assignments
        "http://[2002:a00:1::1]/",  # 6to4 of 10.0.0.1
        "http://[2002:808:808::1]/",  # 6to4 at all (deprecated, relayed)
        "http://[64:ff9b::a9fe:a9fe]/",  # NAT64 of 169.254.169.254
        "http://[64:ff9b::a00:1]/",  # NAT64 of 10.0.0.1
        "http://[64:ff9b:1::a00:1]/",  # local-use NAT64
        "http://[::ffff:10.0.0.1]/",  # v4-mapped private
        "http://[::ffff:127.0.0.1]/",
        "http://[::ffff:100.100.100.200]/",
        "http://[::10.0.0.1]/",  # v4-compatible (deprecated)
        "http://１２７.0.0.1/",  # fullwidth digits: loopback once normalised
    ],
)
def test_private_in_disguise_is_refused(url):
    with pytest.raises(WebhookTargetRefused, match="resolves to"):
        resolve_target(url, [])


@pytest.mark.parametrize(
    ("url", "ip"),
    [
        ("http://8.8.8.8/hook", "8.8.8.8"),
        ("http://[64:ff9b::808:808]/", "64:ff9b::808:808"),  # NAT64 (DNS64) of a public one
        ("http://[::ffff:8.8.8.8]/", "::ffff:8.8.8.8"),
        ("https://[2606:4700:4700::1111]/", "2606:4700:4700::1111"),
    ],
)
def test_public_addresses_pass(url, ip):
    assert ip_address(resolve_target(url, [])[2]) == ip_address(ip)


def test_allow_list_covers_the_v4_an_address_carries_and_hosts_go_out_ascii():
    mapped = resolve_target("http://[::ffff:127.0.0.1]:81/", LOOPBACK)[2]
    assert ip_address(mapped) == ip_address("::ffff:127.0.0.1")
    host, port, ip = resolve_target("http://１２７.0.0.1:8080/x", LOOPBACK)
    assert (host, port, ip) == ("127.0.0.1", 8080, "127.0.0.1")
    with pytest.raises(WebhookTargetRefused, match="bad port"):
        resolve_target("http://127.0.0.1:８０８０/x", LOOPBACK)
    with pytest.raises(WebhookTargetRefused, match="100.64.0.1"):
        resolve_target("http://100.64.0.1/", LOOPBACK)  # allowing loopback allows only it
    assert resolve_target("http://100.64.0.1/", parse_networks("100.64.0.0/10"))[2] == "100.64.0.1"


SECRET = new_secret()


def _signed(body: bytes) -> dict[str, str]:
    now = int(time.time())
    return {
        "webhook-id": "msg_1",
        "webhook-timestamp": str(now),
        "webhook-signature": sign("msg_1", now, body, [SECRET]),
    }


BODY = json.dumps({"type": "request.completed", "data": {"x": 1}}).encode()


@pytest.mark.parametrize(
    "change",
    [
        {"webhook-signature": "v1,ñ" + "A" * 43},  # non-ASCII signature (TypeError before)
        {"webhook-signature": "v1,✓"},
        {"webhook-id": "msg_ü"},
        {"webhook-timestamp": "١٧٠٠٠٠٠٠٠٠"},  # Arabic-Indic digits: int() would take them
        {"webhook-timestamp": "-5"},
        {"webhook-timestamp": "9" * 40},
        {"webhook-signature": b"v1,abc"},  # not even text
        {"webhook-id": 7},
    ],
)
def test_odd_headers_are_refused_with_the_documented_error(change):
    headers = {**_signed(BODY), **change}
    with pytest.raises(WebhookVerificationError):
        verify_webhook(headers, BODY, SECRET)


def test_a_good_delivery_still_verifies_and_odd_bodies_are_refused():
    assert verify_webhook(_signed(BODY), BODY, SECRET)["data"] == {"x": 1}
    assert verify_webhook(_signed(BODY), BODY.decode(), SECRET)["data"] == {"x": 1}
    with pytest.raises(WebhookVerificationError):
        verify_webhook(_signed(BODY), 12345, SECRET)  # type: ignore[arg-type]
    not_json = b"\xff\xfe not json"
    with pytest.raises(WebhookVerificationError, match="not JSON"):
        verify_webhook(_signed(not_json), not_json, SECRET)
