"""MLflow calls that outlast a tracking outage (a tracking server restarting, a network blip).

Two layers:

- MLflow's own HTTP retries (urllib3, every method, POST too), kept short inside a trial
  (``quick_http_retries``: 2 retries, backoff factor 1, 30 s timeout, unless the environment
  sets ``MLFLOW_HTTP_REQUEST_MAX_RETRIES`` / ``_BACKOFF_FACTOR`` / ``_TIMEOUT``; MLflow's
  defaults would block one call for about two minutes), so a trial notices an outage in
  seconds and keeps training;
- ``Backoff``: this module's, for the calls that must land: exponential waits from
  ``FIRST_WAIT_S`` doubling to at most ``MAX_WAIT_S``, for as long as the tracking store has
  been unreachable less than the patience (``ORCH_TRACKING_PATIENCE_S``, default 600 s; a
  success resets it). After that the call fails with ``TrackingUnavailable``, which names
  the outage's length. Only transient errors are retried (``is_transient``: the server
  unreachable, timeouts, 5xx, 429, a locked database); a refused request fails at once.
"""

from __future__ import annotations

import logging
import os
import re
import time
from typing import Callable, TypeVar

import requests
from mlflow.exceptions import MlflowException, RestException

log = logging.getLogger(__name__)

PATIENCE_ENV = "ORCH_TRACKING_PATIENCE_S"
DEFAULT_PATIENCE_S = 600.0
FIRST_WAIT_S = 0.5
MAX_WAIT_S = 15.0
# MLflow error codes of a server that is there but cannot answer now (INTERNAL_ERROR too when
# a server answered it: MLflow also gives that code to errors raised on this side, uncoded)
TRANSIENT_CODES = {"TEMPORARILY_UNAVAILABLE", "REQUEST_LIMIT_EXCEEDED", "DEADLINE_EXCEEDED", "ABORTED",
                   "RESOURCE_EXHAUSTED"}
_QUICK_HTTP = {"MLFLOW_HTTP_REQUEST_MAX_RETRIES": "2", "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1",
               "MLFLOW_HTTP_REQUEST_TIMEOUT": "30"}

T = TypeVar("T")


class TrackingUnavailable(RuntimeError):
    """The tracking store did not answer for longer than the patience."""


def patience_s() -> float:
    raw = os.environ.get(PATIENCE_ENV, "")
    try:
        return float(raw) if raw else DEFAULT_PATIENCE_S
    except ValueError:
        raise ValueError(f"${PATIENCE_ENV}: seconds, got {raw!r}") from None


def quick_http_retries(uri: str) -> None:
    """Short MLflow HTTP retries in this process (a trial's), unless the environment says
    otherwise: ``Backoff`` waits out the long outages."""
    if uri.startswith(("http://", "https://")):
        for k, v in _QUICK_HTTP.items():
            os.environ.setdefault(k, v)


def is_transient(exc: BaseException) -> bool:
    """Would the same call succeed later? (The server unreachable or overloaded, not a
    request it refused.)"""
    if isinstance(exc, TrackingUnavailable):
        return False
    if isinstance(exc, requests.exceptions.HTTPError):
        status = exc.response.status_code if exc.response is not None else 500
        return status >= 500 or status == 429
    if isinstance(exc, (requests.exceptions.ConnectionError, requests.exceptions.Timeout,
                        ConnectionError, TimeoutError)):
        return True
    if isinstance(exc, MlflowException):
        msg = str(exc)
        code = re.search(r"failed with error code (\d+)", msg)
        if code:  # MLflow's wording for a response that was not JSON: a proxy's, or a refusal
            status = int(code.group(1))
            return status >= 500 or status == 429
        if msg.startswith("API request to") or "database is locked" in msg:
            return True  # MLflow's wording for a connection or timeout failure after its own retries
        if exc.error_code in TRANSIENT_CODES or (isinstance(exc, RestException) and exc.error_code == "INTERNAL_ERROR"):
            return True
    cause = exc.__cause__ or exc.__context__
    return cause is not None and cause is not exc and is_transient(cause)


class Backoff:
    """Waits between attempts of calls to one tracking store; fails once it has been
    unreachable longer than ``patience`` seconds (``patience_s()`` by default)."""

    def __init__(self, patience: float | None = None, sleep: Callable[[float], None] = time.sleep,
                 clock: Callable[[], float] = time.monotonic):
        self.patience = patience_s() if patience is None else patience
        self._sleep, self._clock = sleep, clock
        self._since: float | None = None  # when the current outage was first seen
        self._delay = FIRST_WAIT_S

    def ok(self) -> None:
        if self._since is not None:
            log.warning("tracking store reachable again after %.0f s", self._clock() - self._since)
        self._since, self._delay = None, FIRST_WAIT_S

    def wait(self, exc: BaseException, what: str) -> None:
        """Sleep before the next attempt after ``exc``; re-raise it if it is not transient,
        raise ``TrackingUnavailable`` once the outage has outlasted the patience."""
        if not is_transient(exc):
            raise exc
        now = self._clock()
        if self._since is None:
            self._since = now
        if now + self._delay - self._since > self.patience:
            raise TrackingUnavailable(
                f"{what}: the tracking store did not answer for {now - self._since:.0f} s (patience "
                f"{self.patience:.0f} s, ${PATIENCE_ENV}); last error: {str(exc).splitlines()[0][:300]}") from exc
        log.warning("%s: tracking store unreachable (%s); retrying in %.1f s", what,
                    str(exc).splitlines()[0][:200], self._delay)
        self._sleep(self._delay)
        self._delay = min(self._delay * 2, MAX_WAIT_S)

    def call(self, fn: Callable[[], T], what: str) -> T:
        """``fn()``, retried through transient errors."""
        while True:
            try:
                out = fn()
            except Exception as e:  # noqa: BLE001 - wait() re-raises what is not transient
                self.wait(e, what)
                continue
            self.ok()
            return out
