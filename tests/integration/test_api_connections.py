"""The API's connection guards (producers/gateway/connections.py) over real sockets: idle and
slow connections are closed, and 300 idle ones never stop another caller."""

from __future__ import annotations

import os
import resource
import select
import socket
import time
from collections.abc import Callable, Iterator

import httpx
import pytest

from tests.conftest import ApiServer, wait_for

IDLE = 300
SUBMIT = "/v1/apps/lifecycle/jobs/echo/async_run_remote"


@pytest.fixture
def open_files() -> Iterator[None]:
    """Room for the idle sockets here and in the API (which inherits the limit)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = 4 * IDLE
    if soft != resource.RLIM_INFINITY and soft < want:
        if hard != resource.RLIM_INFINITY and hard < want:
            pytest.skip(f"open-files hard limit {hard} is below {want}")
        resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))
    yield
    resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


@pytest.fixture
def start_api(jobcord_env: dict[str, str], open_files: None) -> Iterator[Callable[..., ApiServer]]:
    """``start(JOBCORD_API_...="1")``: an API with these limits, stopped after the test."""
    servers: list[ApiServer] = []

    def start(**limits: str) -> ApiServer:
        servers.append(ApiServer({**jobcord_env, **limits}, []))
        return servers[-1]

    yield start
    for server in servers:
        server.stop()


@pytest.fixture
def connect() -> Iterator[Callable[[ApiServer, int], list[socket.socket]]]:
    """``connect(server, n)``: n TCP connections that send nothing, closed after the test."""
    opened: list[socket.socket] = []

    def open_(server: ApiServer, n: int) -> list[socket.socket]:
        new = [socket.create_connection(("127.0.0.1", server.port), timeout=5) for _ in range(n)]
        opened.extend(new)
        return new

    yield open_
    for s in opened:
        s.close()


def client_connections(server: ApiServer, established_only: bool = True) -> int:
    """Connections the API process holds on its own port (established, or in any state but
    listening).

    Counting every socket it holds flaked: the readiness probe's connection, closed by the
    client, may still be open on the server side when the baseline is taken."""
    inodes = set()
    for fd in os.scandir(f"/proc/{server.proc.pid}/fd"):
        try:
            target = os.readlink(fd.path)
        except FileNotFoundError:
            continue
        if target.startswith("socket:["):
            inodes.add(target[len("socket:[") : -1])
    count = 0
    for table in ("tcp", "tcp6"):
        with open(f"/proc/{server.proc.pid}/net/{table}") as f:
            next(f)
            for line in f:
                fields = line.split()
                local_port = int(fields[1].rsplit(":", 1)[1], 16)
                state = fields[3]
                wanted = state == "01" if established_only else state != "0A"
                count += local_port == server.port and wanted and fields[9] in inodes
    return count


def closed_by_server(s: socket.socket) -> bool:
    if not select.select([s], [], [], 0)[0]:
        return False
    try:
        data = s.recv(4096)
    except ConnectionResetError:
        return True
    assert data == b"", f"an idle connection was sent {data!r}"
    return True


def get_healthz(s: socket.socket) -> None:
    """One request on a raw connection, read to the end of its response."""
    s.sendall(b"GET /healthz HTTP/1.1\r\nHost: test\r\n\r\n")
    answer = b""
    while b"\r\n\r\n" not in answer:
        answer += s.recv(4096)
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200"), head
    length = int(
        next(h for h in head.lower().split(b"\r\n") if h.startswith(b"content-length")).split(b":")[
            1
        ]
    )
    while len(body) < length:
        body += s.recv(4096)


def other_caller(server: ApiServer, api_key: str) -> tuple[float, float]:
    """Seconds a fresh caller waits for /healthz, and for a job submit (202)."""
    with httpx.Client(
        base_url=server.url, headers={"Authorization": f"Bearer {api_key}"}, timeout=10
    ) as c:
        start = time.monotonic()
        assert c.get("/healthz").status_code == 200
        healthz_s = time.monotonic() - start
    with httpx.Client(
        base_url=server.url, headers={"Authorization": f"Bearer {api_key}"}, timeout=10
    ) as c:
        start = time.monotonic()
        r = c.post(SUBMIT, json={"input": {"x": 1}})
        submit_s = time.monotonic() - start
    assert r.status_code == 202, r.text
    return healthz_s, submit_s


def test_300_idle_connections_do_not_stop_other_callers(start_api, connect, api_key):
    server = start_api(JOBCORD_API_HEADER_TIMEOUT_S="60")
    idle = connect(server, IDLE)
    wait_for(lambda: client_connections(server) >= IDLE, 10, "the API to accept them all")
    healthz_s, submit_s = other_caller(server, api_key)
    print(f"\n{IDLE} idle connections open: /healthz {healthz_s:.3f} s, submit {submit_s:.3f} s")
    assert healthz_s < 2 and submit_s < 2
    assert not any(closed_by_server(s) for s in idle)  # below the cap: all still held


def test_past_the_cap_the_longest_idle_make_room(start_api, connect, api_key):
    cap = 100
    server = start_api(JOBCORD_API_HEADER_TIMEOUT_S="60", JOBCORD_API_MAX_CONNECTIONS=str(cap))
    idle = connect(server, IDLE)
    wait_for(
        lambda: sum(closed_by_server(s) for s in idle) >= IDLE - cap,
        10,
        "the API to close the oldest idle connections",
    )
    healthz_s, submit_s = other_caller(server, api_key)
    print(f"\n{IDLE} idle, cap {cap}: /healthz {healthz_s:.3f} s, submit {submit_s:.3f} s")
    assert healthz_s < 2 and submit_s < 2
    assert not any(closed_by_server(s) for s in idle[-cap // 2 :])  # the newest are kept
    closed = sum(closed_by_server(s) for s in idle)
    assert IDLE - cap <= closed <= IDLE - cap + 10


def test_idle_connections_are_closed_after_the_header_timeout(start_api, connect):
    server = start_api(JOBCORD_API_HEADER_TIMEOUT_S="1", JOBCORD_API_KEEP_ALIVE_S="2")
    start = time.monotonic()
    idle = connect(server, IDLE)
    wait_for(lambda: all(closed_by_server(s) for s in idle), 10, "idle connections to close")
    all_closed_s = time.monotonic() - start
    print(f"\n{IDLE} connections that never sent a byte: all closed after {all_closed_s:.3f} s")
    assert 0.9 < all_closed_s < 3
    wait_for(
        lambda: client_connections(server, established_only=False) == 0,
        5,
        "the API to let go of them",
    )

    # After a response, silence is the keep-alive timeout's.
    with socket.create_connection(("127.0.0.1", server.port), timeout=5) as s:
        get_healthz(s)
        answered = time.monotonic()
        wait_for(lambda: closed_by_server(s), 10, "the keep-alive timeout")
        keep_alive_s = time.monotonic() - answered
    print(f"silent after a response: closed after {keep_alive_s:.3f} s (keep-alive 2 s)")
    assert 1.9 < keep_alive_s < 4


def slowloris(s: socket.socket, head: bytes) -> tuple[bytes, float]:
    """Send ``head`` then one header byte per 0.5 s; what the server sent back, and when
    (seconds after the first byte)."""
    s.sendall(head)
    start = time.monotonic()
    while time.monotonic() - start < 10:
        if select.select([s], [], [], 0.5)[0]:
            answer = s.recv(4096)
            return answer, time.monotonic() - start
        s.sendall(b"a")
    raise AssertionError("the slow client was never cut off")


def test_a_slowloris_client_is_cut_off_after_the_header_timeout(start_api):
    # 1.25 s: the cut falls between two of the client's bytes (a byte arriving as the
    # server closes would turn its 408 into a reset).
    server = start_api(JOBCORD_API_HEADER_TIMEOUT_S="1.25", JOBCORD_API_KEEP_ALIVE_S="30")
    with socket.create_connection(("127.0.0.1", server.port), timeout=5) as s:
        answer, first_s = slowloris(s, b"GET /healthz HTTP/1.1\r\nHost: test\r\nX-Slow: ")
        assert answer.startswith(b"HTTP/1.1 408"), answer
        assert s.recv(4096) == b""
    # A later request on a kept-alive connection: timed from its first byte.
    with socket.create_connection(("127.0.0.1", server.port), timeout=5) as s:
        get_healthz(s)
        time.sleep(1.5)  # idle between requests is not the head timeout's business
        answer, later_s = slowloris(s, b"GET /healthz HTTP/1.1\r\nX-Slow: ")
        assert answer.startswith(b"HTTP/1.1 408"), answer
    print(f"\nslowloris cut off after {first_s:.3f} s; on a kept-alive connection {later_s:.3f} s")
    assert 1.2 < first_s < 2.5 and 1.2 < later_s < 2.5
