"""What both modes share: client + spool + deliverer, and sending one window."""

from __future__ import annotations

import logging

from profiles.model import Profile
from uploader.client import IngestClient
from uploader.delivery import Deliverer
from uploader.limits import check_age
from uploader.options import UploadOptions
from uploader.prepare import build_requests
from uploader.spool import Spool

log = logging.getLogger("ebpf-upload")


class Session:
    def __init__(self, opts: UploadOptions) -> None:
        self.opts = opts
        self.client = IngestClient(opts)
        self.spool = Spool(opts.spool_dir, opts.spool_max_bytes, opts.server_address,
                           opts.tenant_id)
        self.deliverer = Deliverer(self.client, self.spool, opts.retry)
        self.windows = 0
        pending = len(self.spool)
        if pending:
            log.info("%d window upload(s) waiting in the spool %s; sending them first",
                     pending, self.spool.dir)

    def send_window(self, w: Profile) -> None:
        check_age(w.start_ns, w.end_ns, allow_old=self.opts.allow_old)
        for req in build_requests(w, self.opts):
            self.deliverer.deliver(req)
        self.windows += 1

    def summary(self) -> str:
        d = self.deliverer
        text = f"{self.windows} window(s), {d.sent} upload(s) delivered"
        waiting = len(self.spool)
        if waiting:
            text += (f", {waiting} waiting in the spool {self.spool.dir} (sent when the "
                     "server answers, on the next run)")
        if self.spool.dropped:
            text += f", {self.spool.dropped} dropped from the full spool"
        return text
