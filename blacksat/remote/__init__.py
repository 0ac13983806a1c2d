"""Remote devices: serve a lab instrument over HTTP, safely, and train it from another machine.

On the lab PC, ``blacksat serve`` (or :class:`~blacksat.remote.server.BackgroundServer` /
:func:`~blacksat.remote.server.serve` around a :class:`~blacksat.remote.service.DeviceService`)
exposes a device; elsewhere, :class:`RemoteDevice` is that device: a :class:`~blacksat.Device`
for every trainer, estimator and optimizer.

Modules: :mod:`~blacksat.remote.wire` (arrays as raw bytes, never pickle),
:mod:`~blacksat.remote.auth` (hashed, scoped tokens), :mod:`~blacksat.remote.service` (the rules:
budgets, validation, slew, limits, lease, idempotency, log), :mod:`~blacksat.remote.app` (HTTP),
:mod:`~blacksat.remote.server` (bind rules, uvicorn), :mod:`~blacksat.remote.client`
(:class:`RemoteDevice`). The server needs the ``remote`` extra (``pip install
'blacksat[remote]'``: FastAPI, uvicorn, httpx); the client needs httpx.
"""

from blacksat.remote.client import LeaseHeld, RemoteDevice, RemoteRefused

__all__ = ["LeaseHeld", "RemoteDevice", "RemoteRefused"]
