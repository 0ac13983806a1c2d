"""Wire encoding, the token store, and the ``blacksat serve`` / ``blacksat token`` commands."""

from __future__ import annotations

import base64
import json
import os
import signal
import socket
import subprocess
import sys
import time

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from remote_lab import chip

from blacksat.errors import ConfigError
from blacksat.product.cli import main
from blacksat.product.serve_cmd import resolve_device
from blacksat.remote import RemoteDevice
from blacksat.remote.auth import TokenStore, digest, parse_scopes
from blacksat.remote.wire import WireError, decode_array, encode_array


# ---------------------------------------------------------------------- wire
@given(
    st.lists(st.integers(0, 4), min_size=0, max_size=3),
    st.sampled_from([np.float64, np.float32, np.int32, np.int64, np.bool_]),
)
def test_arrays_round_trip_bitwise_as_raw_bytes(shape, dtype):
    a = (np.random.default_rng(0).standard_normal(shape) * 100).astype(dtype)
    back = decode_array(json.loads(json.dumps(encode_array(a))), "a", max_elements=1000)
    assert back.dtype == np.float64 and back.shape == a.shape
    np.testing.assert_array_equal(back, a.astype(np.float64))


def test_decoding_refuses_anything_but_a_validated_raw_array():
    good = encode_array(np.arange(6.0).reshape(2, 3))
    cases = {
        "keys": {**good, "pickle": "x"},
        "dtype": {**good, "dtype": "|O"},
        "big-endian": {**good, "dtype": ">f8"},
        "shape": {**good, "shape": [2, -3]},
        "ndim": {**good, "shape": [1] * 9},
        "count": {**good, "shape": [3, 3]},
        "base64": {**good, "data": good["data"][:-4] + "!!!!"},
        "elements": {**good, "shape": [10**6, 10**6]},
        "not-object": [1, 2],
        "bool-shape": {**good, "shape": [True, 6]},
    }
    for what, obj in cases.items():
        with pytest.raises(WireError):
            decode_array(obj, what, max_elements=1000)
    pickled = base64.b64encode(b"\x80\x04cos\nsystem\n").decode()
    with pytest.raises(WireError):
        decode_array({"dtype": "<f8", "shape": [1], "data": pickled}, "p", max_elements=10)


# ---------------------------------------------------------------------- tokens
def test_tokens_are_stored_as_digests_and_checked_by_scope_and_revocation(tmp_path):
    store = TokenStore(tmp_path / "tokens.json")
    secret = store.create("alice", ("query", "read"), max_reconfigurations=5)
    text = (tmp_path / "tokens.json").read_text()
    assert secret not in text and digest(secret) in text
    assert oct(os.stat(tmp_path / "tokens.json").st_mode & 0o777) == "0o600"
    tok = store.authenticate(secret)
    assert tok is not None and tok.scopes == ("read", "query") and tok.max_reconfigurations == 5
    assert store.authenticate(secret + "x") is None and store.authenticate(None) is None
    again = TokenStore(tmp_path / "tokens.json")  # persisted
    assert again.authenticate(secret).name == "alice"
    again.revoke("alice")
    assert store.authenticate(secret) is None  # the other store sees the file change
    with pytest.raises(ConfigError, match="exists"):
        store.create("alice", ("read",))
    with pytest.raises(ConfigError, match="scopes"):
        store.create("bob", ("write",))
    with pytest.raises(ConfigError, match="name"):
        store.create("bad name!", ("read",))
    assert parse_scopes("read, admin") == ("read", "admin")
    (tmp_path / "other.json").write_text('{"format": "something else"}')
    with pytest.raises(ConfigError, match="not a blacksat token store"):
        TokenStore(tmp_path / "other.json")


# ---------------------------------------------------------------------- commands
def test_serve_resolves_a_built_in_name_or_a_run_files_device(tmp_path):
    dev, ident = resolve_device("mzi", {"n_modes": 4}, 3, None)
    assert ident == "mzi:3" and dev.space.dim == 12
    run = tmp_path / "run.toml"
    run.write_text('[device]\nname = "mrr"\nseed = 2\n')
    dev, ident = resolve_device(None, {}, None, str(run))
    assert ident == "mrr:2" and type(dev).__name__ == "MRRWeightBank"
    with pytest.raises(ConfigError, match="contradicts"):
        resolve_device("mzi", {}, None, str(run))


def test_serve_refuses_a_non_loopback_bind_without_tls(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["serve", "--host", "0.0.0.0", "--state", str(tmp_path / "s")])
    assert exit_.value.code == 2
    err = capsys.readouterr().err
    assert "without TLS" in err and err.count("\n") == 1
    assert not (tmp_path / "s").exists()  # refused before anything was created


def test_token_command_adds_lists_and_revokes(tmp_path, capsys):
    state = str(tmp_path / "s")
    assert main(["token", "add", "alice", "--scopes", "read,query", "--state", state]) == 0
    secret = capsys.readouterr().out.strip()
    assert TokenStore(tmp_path / "s" / "tokens.json").authenticate(secret).name == "alice"
    main(["token", "list", "--state", state])
    assert "alice" in capsys.readouterr().out and secret not in capsys.readouterr().out
    main(["token", "revoke", "alice", "--state", state])
    assert TokenStore(tmp_path / "s" / "tokens.json").authenticate(secret) is None
    with pytest.raises(SystemExit):
        main(["token", "add", "bob", "--scopes", "write", "--state", state])


def test_blacksat_serve_end_to_end(tmp_path):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    args = ["--device", "mzi", "--device-args", '{"n_modes": 4, "noise": 0, "drift": 0}']
    more = ["--state", str(tmp_path / "s"), "--max-step", "7"]
    proc = subprocess.Popen(
        [sys.executable, "-m", "blacksat.product.cli", "serve", *args, "--port", str(port), *more],
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        lines = []
        deadline = time.monotonic() + 60
        while not any(line.startswith("serving") for line in lines):
            assert proc.poll() is None and time.monotonic() < deadline, "".join(lines)
            lines.append(proc.stderr.readline())
        secret = lines[lines.index(next(ln for ln in lines if "shown once" in ln)) + 1].strip()
        dev = RemoteDevice(f"http://127.0.0.1:{port}", token=secret)
        for _ in range(100):  # uvicorn binds just after the banner
            try:
                info = dev.describe()
                break
            except Exception:
                time.sleep(0.1)
        assert info["device"] == "mzi:0" and info["token"]["scopes"] == ["read", "query", "admin"]
        x = np.eye(4)[:2]
        th = chip().space.sample(0, 2)
        ref = chip().query_many(th, x)  # the same chip: mzi, seed 0, 4 modes, noise-free
        np.testing.assert_array_equal(dev.query_many(th, x), ref)
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)
