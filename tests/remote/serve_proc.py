"""A device server in its own process, for the crash tests (not a test module).

``python serve_proc.py STATE PORT MODE N``: serves a 4-mode noise-free chip from ``STATE``
(tokens.json, queries.sqlite) on 127.0.0.1:PORT (0: any; the port is written to STATE/port).
MODE ``device``: the N-th query (1-based) reaches the device, then the process stalls before
logging; ``logged``: the N-th query is logged, then the process stalls before answering;
``none``: no stall. A stall writes STATE/stalled and sleeps until the process is killed.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import torch
from remote_lab import chip

from blacksat.querylog import QueryLog
from blacksat.remote.auth import TokenStore
from blacksat.remote.server import BackgroundServer
from blacksat.remote.service import DeviceService

torch.set_num_threads(1)
state, port, mode, stall_at = Path(sys.argv[1]), int(sys.argv[2]), sys.argv[3], int(sys.argv[4])
calls = {"device": 0, "logged": 0}


def stall(where: str) -> None:
    calls[where] += 1
    if mode == where and calls[where] == stall_at:
        (state / "stalled").write_text(where)
        while True:
            time.sleep(60)


class Stalling:
    def __init__(self, device):
        self._device, self.space = device, device.space
        self.input_shape, self.output_shape = device.input_shape, device.output_shape

    def query(self, theta, x):
        return self.query_many(theta[None], x)[0]

    def query_many(self, thetas, x):
        y = self._device.query_many(thetas, x)
        stall("device")
        return y


log = QueryLog(state / "queries.sqlite", device="chip")
service = DeviceService(
    Stalling(chip()),
    TokenStore(state / "tokens.json"),
    log,
    name="chip",
    observers=[lambda record: stall("logged")],
)
server = BackgroundServer(service, port=port).start()
# written whole, then renamed: the test polls for the file and must never read it half-written
(state / "port.tmp").write_text(server.url.rsplit(":", 1)[1])
(state / "port.tmp").replace(state / "port")
while True:
    time.sleep(60)
