"""Fuzzing every endpoint of the device server: never a 500, never a setting applied."""

from __future__ import annotations

import base64
import json

import httpx
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from remote_lab import chip, lab

from blacksat.remote.service import Limits
from blacksat.remote.wire import encode_array

FUZZ = settings(
    max_examples=20,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
ASCII = st.characters(min_codepoint=32, max_codepoint=126)
SAFE = st.characters(whitelist_categories=(), whitelist_characters="abcdefghijkmnopqrsxyz-_.0189")


@pytest.fixture(scope="module")
def fuzzed(tmp_path_factory):
    limits = Limits(rate=1e6, burst=10**6, max_body_bytes=8192, max_elements=512)
    with lab(tmp_path_factory.mktemp("fuzz"), limits=limits, bounded=True) as running:
        yield running
        assert running.spy.applied == []  # never a setting applied, over every example
        assert running.service.log.spent().queries == 0


def who(lab_, name):
    if name in lab_.tokens:
        return {"Authorization": f"Bearer {lab_.tokens[name]}"}
    return {} if name == "none" else {"Authorization": name}


# header values as a client can send them (no leading or trailing blanks)
TEXT = st.text(ASCII, max_size=40).map(str.strip)
TOKENS = st.sampled_from(["none", "alice", "reader", "root"]) | TEXT
HEADER = st.none() | TEXT | st.just("valid-key-0001")
JSONISH = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=12,
)
BODY = (
    st.binary(max_size=300)
    | JSONISH.map(lambda v: json.dumps(v).encode())
    | st.dictionaries(st.sampled_from(["thetas", "x", "name", "scopes"]), JSONISH, max_size=3).map(
        lambda v: json.dumps(v).encode()
    )
)


def _valid() -> dict:
    return {
        "thetas": encode_array(chip().space.sample(0, 2)),
        "x": encode_array(np.ones((2, 4))),
    }


def _mutate(kind: str, which: str, junk: str, number: int) -> bytes:
    """A well-formed query with exactly one defect."""
    doc = _valid()
    arr = doc[which]
    if kind == "dtype":
        arr["dtype"] = junk if junk not in ("<f8", "<f4", "<i8", "<i4", "|b1") else "|O"
    elif kind == "shape":
        arr["shape"] = [number, 3]
    elif kind == "data":
        arr["data"] = junk + "!"
    elif kind == "short":
        arr["data"] = arr["data"][:-8]
    elif kind == "extra":
        arr["extra"] = junk
    elif kind == "missing":
        del doc[which]
    elif kind == "bounds":
        t = chip().space.sample(0, 2)
        t[0, number % t.shape[1]] = 7.0 + abs(number)
        doc["thetas"] = encode_array(t)
    elif kind == "nan":
        bad = np.ones((2, 4)) if which == "x" else chip().space.sample(0, 2)
        bad[0, 0] = np.nan
        doc[which] = encode_array(bad)
    elif kind == "huge":
        arr["shape"] = [10**9, 10**9]
    elif kind == "dim":
        doc[which] = encode_array(np.ones((2, 5)))
    elif kind == "empty":
        doc[which] = {"dtype": "<f8", "shape": [0, 4 if which == "x" else 12], "data": ""}
    return json.dumps(doc).encode()


MUTATION = st.sampled_from(
    ["dtype", "shape", "data", "short", "extra", "missing", "bounds", "nan", "huge", "dim", "empty"]
)


def _check(r: httpx.Response) -> None:
    assert r.status_code < 500, r.text
    assert r.headers["content-type"].startswith("application/json")


@FUZZ
@given(token=TOKENS, key=HEADER, lease=HEADER, body=BODY)
def test_fuzz_query_with_arbitrary_bodies(fuzzed, token, key, lease, body):
    headers = who(fuzzed, token)
    for name, value in (("Idempotency-Key", key), ("X-Blacksat-Lease", lease)):
        if value is not None:
            headers[name] = value
    _check(httpx.post(f"{fuzzed.url}/v1/query", content=body, headers=headers, timeout=10))


@FUZZ
@given(
    mutation=MUTATION,
    which=st.sampled_from(["thetas", "x"]),
    junk=st.text(ASCII, max_size=12),
    number=st.integers(-(2**40), 2**40),
)
def test_fuzz_query_with_one_defect_in_a_well_formed_body(fuzzed, mutation, which, junk, number):
    headers = {
        **who(fuzzed, "alice"),
        "Idempotency-Key": base64.urlsafe_b64encode(junk.encode()).decode().strip("=") + "-pad-key",
        "X-Blacksat-Lease": "fuzz-lease-1",
    }
    r = httpx.post(
        f"{fuzzed.url}/v1/query",
        content=_mutate(mutation, which, junk, number),
        headers=headers,
        timeout=10,
    )
    _check(r)
    assert r.status_code in (400, 409, 413, 422), r.text


@FUZZ
@given(token=TOKENS, lease=HEADER, method=st.sampled_from(["GET", "POST", "DELETE", "PUT"]))
def test_fuzz_describe_health_and_lease(fuzzed, token, lease, method):
    headers = who(fuzzed, token)
    if lease is not None:
        headers["X-Blacksat-Lease"] = lease
    for path in ("/v1/describe", "/v1/health", "/v1/lease", "/v1/nothing"):
        _check(httpx.request(method, f"{fuzzed.url}{path}", headers=headers, timeout=10))
    httpx.delete(f"{fuzzed.url}/v1/lease", headers=headers, timeout=10)  # let others in


@FUZZ
@given(
    token=TOKENS,
    body=BODY,
    name=st.text(SAFE, min_size=1, max_size=12).filter(
        lambda s: s not in ("alice", "reader", "root")
    ),
)
def test_fuzz_admin_endpoints(fuzzed, token, body, name):
    headers = who(fuzzed, token)
    url = fuzzed.url
    for method, path in (
        ("POST", "/v1/admin/tokens"),
        ("POST", f"/v1/admin/tokens/{name}/revoke"),
        ("PUT", f"/v1/admin/tokens/{name}/budget"),
    ):
        _check(httpx.request(method, f"{url}{path}", content=body, headers=headers, timeout=10))
