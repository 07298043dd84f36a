"""The job the fault suite (``bench/chaos.py``) runs: its output is derived from its input.

``chaos`` echoes the token its submitter drew, names the request and attempt that produced
it, sleeps a little (so kills land on running work) and, with ``upload=True``, leaves a file
holding the token. Any request whose output or file carries another token, request id or
attempt than its record names got someone else's result.

Every run appends ``start`` and ``end`` lines to the ledger file named by ``CHAOS_LEDGER``
(one ``write`` of a short line with ``O_APPEND`` each): ground truth of what ran, kept
outside Redis and S3, which the suite kills and freezes.
"""

from __future__ import annotations

import json
import os
import time

from jobcord.producers import App, JobContext

app = App("chaos")


def _ledger(event: str, ctx: JobContext, token: str) -> None:
    path = os.environ.get("CHAOS_LEDGER")
    if not path:
        return
    line = json.dumps(
        {
            "ev": event,
            "token": token,
            "rid": ctx.request_id,
            "attempt": ctx.attempt,
            "pid": os.getpid(),
            "ppid": os.getppid(),
            "t": time.time(),
        }
    )
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, (line + "\n").encode())
    finally:
        os.close(fd)


@app.job(upload=True, timeout=60)
def chaos(token: str, sleep_s: float, pad: int, ctx: JobContext) -> dict[str, object]:
    _ledger("start", ctx, token)
    time.sleep(sleep_s)
    (ctx.output_dir / "token.txt").write_text(token)
    _ledger("end", ctx, token)
    # ``pad`` makes some outputs larger than the inline limit, so they go to S3 as objects.
    return {"echo": token, "rid": ctx.request_id, "attempt": ctx.attempt, "pad": "x" * pad}
