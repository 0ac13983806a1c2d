"""The device server on loopback: tokens, scopes, budgets, validation, limits, lease, replay."""

from __future__ import annotations

import json
import pickle
import threading
import time

import httpx
import numpy as np
import pytest
from remote_lab import chip, lab, self_signed

from blacksat import MeteredDevice
from blacksat.errors import (
    BudgetExhausted,
    ConfigError,
    OutOfBoundsError,
    ShapeError,
    ValidationError,
)
from blacksat.querylog import QueryLog
from blacksat.remote import LeaseHeld, RemoteDevice, RemoteRefused
from blacksat.remote.auth import TokenStore
from blacksat.remote.server import BackgroundServer, check_bind
from blacksat.remote.service import DeviceService, Limits
from blacksat.remote.wire import encode_array

X = np.random.default_rng(0).random((3, 4))


def settings(n: int, seed: int = 0) -> np.ndarray:
    return chip().space.sample(seed, n)


def body(thetas: np.ndarray, x: np.ndarray = X) -> bytes:
    return json.dumps({"thetas": encode_array(thetas), "x": encode_array(x)}).encode()


def post(
    url: str, token: str | None, content: bytes, key: str = "key-0001", lease: str = "lease-0001"
):
    headers = {"Idempotency-Key": key, "X-Blacksat-Lease": lease}
    if token is not None:
        headers["Authorization"] = f"Bearer {token}"
    return httpx.post(f"{url}/v1/query", content=content, headers=headers, timeout=10)


# ---------------------------------------------------------------------- the Device protocol
def test_remote_device_reads_what_the_chip_reads_and_describes_the_space(served):
    dev = RemoteDevice(served.url, token=served.tokens["alice"])
    ref = chip()
    assert dev.space == ref.space  # bounds and names exactly
    assert dev.input_shape == ref.input_shape and dev.output_shape == ref.output_shape
    th = settings(5)
    y = dev.query_many(th, X)
    np.testing.assert_array_equal(y, ref.query_many(th, X))  # raw float64 bytes: bitwise
    np.testing.assert_array_equal(dev.query(th[0], X), ref.query(th[0], X))
    assert len(served.spy.applied) == 2  # the whole batch in one request
    info = dev.describe()
    assert info["version"] and info["device"] == "chip"
    assert info["spent"]["reconfigurations"] == 6 and info["spent"]["samples"] == 18
    assert info["budget"] == {"reconfigurations": None, "samples": None}
    assert info["lease"]["held"] and info["lease"]["holder"] == "alice"


def test_a_pickled_remote_device_is_a_working_client_sharing_the_lease(served):
    dev = RemoteDevice(served.url, token=served.tokens["alice"])
    dev.query(settings(1)[0], X)
    copy = pickle.loads(pickle.dumps(dev))
    assert copy.lease == dev.lease and copy.url == dev.url
    np.testing.assert_array_equal(
        copy.query_many(settings(2), X), chip().query_many(settings(2), X)
    )


# ---------------------------------------------------------------------- tokens and scopes
def test_missing_wrong_and_revoked_tokens_are_refused_and_nothing_is_applied(served):
    assert post(served.url, None, body(settings(1))).status_code == 401
    r = post(served.url, "not-a-token", body(settings(1)))
    assert r.status_code == 401 and r.headers["www-authenticate"] == "Bearer"
    r = httpx.get(f"{served.url}/v1/describe", headers={"Authorization": "Basic abc"})
    assert r.status_code == 401
    with pytest.raises(RemoteRefused, match="401"):
        RemoteDevice(served.url, token="nope").query_many(settings(1), X)
    # revoked by an admin over the API
    root = {"Authorization": f"Bearer {served.tokens['root']}"}
    assert httpx.post(f"{served.url}/v1/admin/tokens/bob/revoke", headers=root).status_code == 200
    assert post(served.url, served.tokens["bob"], body(settings(1))).status_code == 401
    # revoked from the command line's store file while the server runs
    TokenStore(served.state / "tokens.json").revoke("alice")
    assert post(served.url, served.tokens["alice"], body(settings(1))).status_code == 401
    assert served.spy.applied == []


def test_a_token_without_the_scope_is_refused(served):
    r = post(served.url, served.tokens["reader"], body(settings(1)))
    assert r.status_code == 403 and "query" in r.json()["message"]
    ok = httpx.get(
        f"{served.url}/v1/describe", headers={"Authorization": f"Bearer {served.tokens['reader']}"}
    )
    assert ok.status_code == 200
    alice = {"Authorization": f"Bearer {served.tokens['alice']}"}
    new = {"name": "eve", "scopes": ["admin"]}
    assert httpx.post(f"{served.url}/v1/admin/tokens", json=new, headers=alice).status_code == 403
    r = httpx.post(f"{served.url}/v1/admin/tokens", json=new, headers=root_of(served))
    assert r.status_code == 200 and TokenStore(served.state / "tokens.json").get("eve") is not None
    assert r.json()["token"] not in (served.state / "tokens.json").read_text()  # digest only
    assert served.spy.applied == []


def root_of(served):
    return {"Authorization": f"Bearer {served.tokens['root']}"}


# ---------------------------------------------------------------------- budgets on the server
def test_the_server_enforces_each_tokens_budget_whatever_the_client_does(served):
    bob = RemoteDevice(served.url, token=served.tokens["bob"])  # 6 reconfigurations
    bob.query_many(settings(4), X)
    with pytest.raises(BudgetExhausted) as err:
        bob.query_many(settings(3, seed=1), X)  # no client meter: the server refuses
    assert (err.value.used, err.value.requested, err.value.budget) == (4, 3, 6)
    # a client meter with a larger budget does not help
    meter = MeteredDevice(bob, max_reconfigurations=100)
    with pytest.raises(BudgetExhausted):
        meter.query_many(settings(3, seed=2), X)
    assert len(served.spy.applied) == 1
    assert bob.describe()["remaining"]["reconfigurations"] == 2
    # an admin raises the budget
    r = httpx.put(
        f"{served.url}/v1/admin/tokens/bob/budget",
        json={"max_reconfigurations": 10},
        headers=root_of(served),
    )
    assert r.status_code == 200
    bob.query_many(settings(3, seed=1), X)
    assert bob.describe()["spent"]["reconfigurations"] == 7


def test_budgets_resume_from_the_log_after_a_restart(tmp_path):
    with lab(tmp_path / "s", budgets={"bob": (6, None)}) as first:
        secret = first.tokens["bob"]
        RemoteDevice(first.url, token=secret).query_many(settings(4), X)
    with lab(tmp_path / "s") as second:  # same state directory: tokens and log
        bob = RemoteDevice(second.url, token=secret)
        assert bob.describe()["spent"]["reconfigurations"] == 4
        with pytest.raises(BudgetExhausted):
            bob.query_many(settings(3, seed=1), X)
        assert second.spy.applied == []


# ---------------------------------------------------------------------- validation and limits
def test_a_periodic_control_past_its_range_is_wrapped_before_the_driver_sees_it(served):
    past = settings(2)
    past[1, 3] = 7.0  # past 2 pi on a phase declared periodic: the same phase as 7 - 2 pi
    assert post(served.url, served.tokens["alice"], body(past)).status_code == 200
    (applied,) = served.spy.applied
    assert np.all((applied >= 0) & (applied < 2 * np.pi))
    np.testing.assert_allclose(applied[1, 3], 7.0 - 2 * np.pi)


def test_settings_are_validated_against_the_servers_space_whatever_the_client_sends(tmp_path):
    with lab(tmp_path / "bounded", bounded=True) as served:
        _refusals(served)


def _refusals(served):
    bad = settings(2)
    bad[1, 3] = 7.0  # past 2 pi, on an actuator that cannot wrap
    r = post(served.url, served.tokens["alice"], body(bad))
    assert r.status_code == 422 and r.json()["error"] == "OutOfBoundsError"
    nan = settings(1)
    nan[0, 0] = np.nan
    assert post(served.url, served.tokens["alice"], body(nan)).status_code == 422
    wrong_d = np.zeros((1, 5))
    assert post(served.url, served.tokens["alice"], body(wrong_d)).status_code == 422
    wrong_x = np.zeros((3, 5))
    assert post(served.url, served.tokens["alice"], body(settings(1), wrong_x)).status_code == 422
    dev = RemoteDevice(served.url, token=served.tokens["alice"])
    with pytest.raises(OutOfBoundsError):
        dev.query_many(bad, X)
    with pytest.raises(ShapeError):
        dev.query_many(wrong_d, X)
    assert served.spy.applied == []


def test_the_slew_limit_refuses_a_jump_within_a_batch_and_from_the_last_setting(tmp_path):
    with lab(tmp_path / "s", limits=Limits(max_step=0.5)) as srv:
        dev = RemoteDevice(srv.url, token=srv.tokens["alice"])
        base = np.full(12, 3.0)
        dev.query_many(np.stack([base, base + 0.4]), X)
        with pytest.raises(ValidationError, match="max_step"):
            dev.query(base + 1.0, X)  # 0.6 from the last setting
        with pytest.raises(ValidationError, match="max_step"):
            dev.query_many(np.stack([base + 0.5, base + 1.2]), X)  # 0.7 inside the batch
        dev.query_many(np.stack([base + 0.8, base + 1.2]), X)
        assert len(srv.spy.applied) == 2


def test_oversized_bodies_and_answers_are_refused(tmp_path):
    limits = Limits(max_body_bytes=4096, max_elements=200, max_reading_elements=100)
    with lab(tmp_path / "s", limits=limits) as srv:
        tok = srv.tokens["alice"]
        assert post(srv.url, tok, b"{" + b" " * 5000 + b"}").status_code == 413
        chunked = httpx.post(
            f"{srv.url}/v1/query",
            content=iter([b" " * 3000, b" " * 3000]),  # no Content-Length: streamed
            headers={"Authorization": f"Bearer {tok}", "Idempotency-Key": "k" * 8},
        )
        assert chunked.status_code == 413
        assert post(srv.url, tok, body(settings(1), np.zeros((60, 4)))).status_code == 422
        r = post(srv.url, tok, body(settings(9), np.zeros((3, 4))))  # 9 * 3 * 4 > 100 readings
        assert r.status_code == 413
        assert srv.spy.applied == []


def test_the_rate_limit_refuses_a_burst_and_recovers(tmp_path):
    with lab(tmp_path / "s", limits=Limits(rate=0.5, burst=3)) as srv:
        head = {"Authorization": f"Bearer {srv.tokens['reader']}"}
        answers = [httpx.get(f"{srv.url}/v1/describe", headers=head) for _ in range(8)]
        codes = [r.status_code for r in answers]
        assert codes[:3] == [200, 200, 200] and codes.count(429) >= 3  # 0.5/s refills few
        assert all(int(r.headers["retry-after"]) >= 1 for r in answers if r.status_code == 429)
        time.sleep(2.1)  # one request's worth
        assert httpx.get(f"{srv.url}/v1/describe", headers=head).status_code == 200
        assert srv.service.stats["refused_rate"] == codes.count(429)


# ---------------------------------------------------------------------- lease and replay
def test_two_clients_race_for_the_lease_and_exactly_one_writes(served):
    gate, results = threading.Barrier(2), {}

    def writer(name: str) -> None:
        dev = RemoteDevice(served.url, token=served.tokens[name])
        gate.wait()
        try:
            results[name] = dev.query_many(settings(1), X)
        except LeaseHeld as exc:
            results[name] = exc

    threads = [threading.Thread(target=writer, args=(n,)) for n in ("alice", "bob")]
    for t in threads:
        t.start()
    for t in threads:
        t.join(20)
    refused = [n for n, r in results.items() if isinstance(r, LeaseHeld)]
    assert len(results) == 2 and len(refused) == 1
    assert "one writer at a time" in str(results[refused[0]])
    assert len(served.spy.applied) == 1


def test_a_released_lease_passes_to_the_next_writer(served):
    alice = RemoteDevice(served.url, token=served.tokens["alice"])
    bob = RemoteDevice(served.url, token=served.tokens["bob"])
    alice.query(settings(1)[0], X)
    with pytest.raises(LeaseHeld):
        bob.query(settings(1)[0], X)
    assert alice.release() == {"released": True}
    bob.query(settings(1)[0], X)
    with pytest.raises(LeaseHeld):
        alice.acquire()


def test_a_retried_key_is_answered_once_and_charged_once(served):
    tok = served.tokens["alice"]
    first = post(served.url, tok, body(settings(3)), key="same-key-1")
    again = post(served.url, tok, body(settings(3)), key="same-key-1")
    assert first.status_code == again.status_code == 200
    assert again.json()["replayed"] and first.json()["y"] == again.json()["y"]
    assert again.json()["ledger"]["reconfigurations"] == 3
    assert len(served.spy.applied) == 1
    other = post(served.url, tok, body(settings(3, seed=5)), key="same-key-1")
    assert other.status_code == 409 and other.json()["error"] == "KeyReused"
    assert post(served.url, tok, body(settings(1)), key="short").status_code == 400
    log = QueryLog(served.state / "queries.sqlite", readonly=True)
    assert len(log) == 1 and log.find("alice", "same-key-1") is not None
    assert next(iter(log.records())).client == "alice"


def test_the_devices_declarations_are_served(served, tmp_path):
    from blacksat.devices import Crossbar
    from blacksat.layered_response import Bank, banks_of

    dev = RemoteDevice(served.url, token=served.tokens["alice"])  # an MZI declares none of them
    assert dev.weight_banks is None and dev.input_range is None and dev.output_kind == "power"
    xbar = Crossbar(layer_sizes=(5, 3), seed=0)
    with lab(tmp_path / "xbar", device=xbar) as srv:
        remote = RemoteDevice(srv.url, token=srv.tokens["alice"])
        assert remote.weight_banks == ((3, 5, 2),) and remote.input_range == (-1.0, 1.0)
        assert remote.output_kind == "signed"
        # what the query-only default reads through a meter: the layered response applies
        assert banks_of(MeteredDevice(remote)) == (Bank(3, 5, 2),)
        remote.close()
    dev.close()


# ---------------------------------------------------------------------- binding and TLS
def test_a_non_loopback_bind_without_tls_is_refused(tmp_path):
    for host in ("0.0.0.0", "192.168.1.20", "lab-pc.example.org", "::"):
        with pytest.raises(ConfigError, match="without TLS"):
            check_bind(host)
    check_bind("127.0.0.1")
    check_bind("::1")
    with pytest.raises(ConfigError, match="both"):
        check_bind("0.0.0.0", tls_cert=tmp_path / "c.pem")
    store, log = TokenStore(), QueryLog(tmp_path / "q.sqlite")
    service = DeviceService(chip(), store, log)
    with pytest.raises(ConfigError, match="without TLS"):
        BackgroundServer(service, host="0.0.0.0")
    log.close()


def test_tls_serves_a_verified_client_and_refuses_an_unverified_one(tmp_path):
    cert, key = self_signed(tmp_path)
    with lab(tmp_path / "s", tls_cert=cert, tls_key=key) as srv:
        assert srv.url.startswith("https://")
        dev = RemoteDevice(srv.url, token=srv.tokens["alice"], verify=str(cert))
        np.testing.assert_array_equal(
            dev.query_many(settings(2), X), chip().query_many(settings(2), X)
        )
        from blacksat.errors import DeviceError

        strict = RemoteDevice(srv.url, token=srv.tokens["alice"], retry=None)  # system CAs
        with pytest.raises(DeviceError, match=r"(?i)certificate|ssl"):
            strict.describe()
        with pytest.raises(httpx.HTTPError):
            httpx.get(srv.url.replace("https", "http") + "/v1/health", timeout=5)


class Slow:
    """A chip that takes 0.6 s per query (a slow instrument)."""

    def __init__(self):
        self._chip = chip()
        self.space, self.input_shape, self.output_shape = (
            self._chip.space,
            self._chip.input_shape,
            self._chip.output_shape,
        )

    def query(self, theta, x):
        return self.query_many(np.asarray(theta)[None], x)[0]

    def query_many(self, thetas, x):
        time.sleep(0.6)
        return self._chip.query_many(thetas, x)


def test_a_client_time_out_is_a_device_timeout_and_its_retry_is_applied_once(tmp_path):
    from blacksat.errors import DeviceTimeout
    from blacksat.retry import RetryPolicy

    with lab(tmp_path / "s", device=Slow()) as srv:
        impatient = RemoteDevice(srv.url, token=srv.tokens["alice"], timeout=0.2, retry=None)
        with pytest.raises(DeviceTimeout):
            impatient.query_many(settings(2), X)
        retry = RetryPolicy(max_retries=20, backoff=0.3, factor=1.0)
        patient = RemoteDevice(
            srv.url, token=srv.tokens["alice"], timeout=0.2, retry=retry, lease=impatient.lease
        )
        y = patient.query_many(settings(2, seed=3), X)  # times out, re-sent with its key
        np.testing.assert_array_equal(y, chip().query_many(settings(2, seed=3), X))
        time.sleep(0.7)  # the first, abandoned query has finished by now
        assert len(srv.spy.applied) == 2  # each query applied once, retries replayed
        assert srv.service.stats["replayed"] >= 1
        spent = patient.describe()["spent"]
        assert (spent["queries"], spent["reconfigurations"]) == (2, 4)
