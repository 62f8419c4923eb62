"""Deliver requests without losing them: retries, then the spool, in order.

Connection errors, timeouts, 5xx, 408 and 429 are retried with exponential backoff and full
jitter (so many hosts coming back together do not hit the server in step); after the last try
the request goes to the spool. While the spool holds anything, new requests queue behind it so
the server receives windows in time order; the spool is retried at start-up and before every
new upload. 400/413/422 (this request is wrong) and 401/403 (the configuration is wrong) are
never retried blindly: they end the run with one message naming the cause and the fix.
"""

from __future__ import annotations

import logging
import random
import threading

from recording.errors import DeliveryError
from uploader.client import IngestClient, IngestRequest, Outcome, Result
from uploader.options import RetryPolicy
from uploader.spool import Spool

log = logging.getLogger("ebpf-upload")


class Deliverer:
    def __init__(self, client: IngestClient, spool: Spool, retry: RetryPolicy,
                 rng: random.Random | None = None) -> None:
        self.client = client
        self.spool = spool
        self.retry = retry
        self.rng = rng or random.Random()
        self.abort = threading.Event()  # set: stop waiting, spool what is left
        self.sent = 0
        self.spooled = 0
        self._down_logged = False

    def _delay(self, attempt: int, result: Result) -> float:
        cap = min(self.retry.max_s, self.retry.base_s * 2**attempt)
        delay = self.rng.uniform(0, cap)
        if result.retry_after_s is not None:  # 429/503 with Retry-After: the server knows
            delay = max(delay, result.retry_after_s)
        return delay

    def _fatal(self, result: Result, req: IngestRequest) -> DeliveryError:
        if result.outcome is Outcome.AUTH:
            where = f"kept in the spool {self.spool.dir} for the next run"
        else:
            where = f"set aside in {self.spool.dir / 'rejected'}"
        return DeliveryError(f"{result.message} (window {req.describe()} {where})")

    def drain_spool(self) -> bool:
        """Send spooled requests oldest first; True when the spool is empty."""
        while not self.abort.is_set():
            item = self.spool.oldest()
            if item is None:
                return True
            path, req = item
            result = self.client.send(req)
            if result.outcome is Outcome.OK:
                self.spool.remove(path)
                self.sent += 1
                if self._down_logged:
                    log.info("server is back; delivering spooled windows")
                    self._down_logged = False
                continue
            if result.outcome is Outcome.RETRY:
                self._log_down(result)
                return False
            if result.outcome is Outcome.REJECTED:
                self.spool.set_aside(path)
            raise self._fatal(result, req)
        return False

    def _log_down(self, result: Result) -> None:
        if not self._down_logged:
            log.warning("%s; keeping windows in the spool %s until it answers",
                        result.message, self.spool.dir)
            self._down_logged = True

    def deliver(self, req: IngestRequest) -> bool:
        """True when sent now; False when spooled for later."""
        if not self.drain_spool():
            self._to_spool(req)
            return False
        for attempt in range(self.retry.attempts):
            result = self.client.send(req)
            if result.outcome is Outcome.OK:
                self.sent += 1
                return True
            if result.outcome is Outcome.AUTH:
                self._to_spool(req)
                raise self._fatal(result, req)
            if result.outcome is Outcome.REJECTED:
                self.spool.put(req, rejected=True)
                raise self._fatal(result, req)
            if attempt + 1 < self.retry.attempts:
                delay = self._delay(attempt, result)
                log.debug("%s; retry %d/%d in %.1fs", result.message, attempt + 1,
                          self.retry.attempts - 1, delay)
                if self.abort.wait(delay):
                    break
            else:
                self._log_down(result)
        self._to_spool(req)
        return False

    def _to_spool(self, req: IngestRequest) -> None:
        self.spool.put(req)
        self.spooled += 1
