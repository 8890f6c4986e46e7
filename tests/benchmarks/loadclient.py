"""The load client: N live connections in one process, an open-loop trigger, receive times.

Run as ``python -m tests.benchmarks.loadclient``; it reads one JSON config line on stdin,
opens the connections (raw asyncio protocols: SSE over HTTP/1.1, or engine.io v4 over a
WebSocket for socket.io, both far cheaper per connection than an HTTP client library),
prints ``READY <connected>``, waits for ``GO`` on stdin (the caller measures the server's idle
memory in between), then runs each phase and prints one JSON result line.

Every broadcast carries a marker ``bseq<tag>:<seq>;`` inside its data. Receive times are
taken with ``time.perf_counter`` in this process, the same clock the trigger uses, so a
latency is "trigger sent" to "bytes arrived at this client".
"""

from __future__ import annotations

import asyncio
import gc
import json
import math
import os
import resource
import sys
import time
from collections.abc import Callable, Sequence
from typing import Any

try:
    import uvloop
except ImportError:  # pragma: no cover - uvloop comes with uvicorn[standard]
    uvloop = None

now = time.perf_counter


class Recorder:
    """Receive times per broadcast, first receipt per connection only (any order)."""

    def __init__(self, tag: str) -> None:
        self.marker = f"bseq{tag}:".encode()
        self.received: dict[int, list[float]] = {}
        self.total = 0

    def scan(self, conn: _Conn, data: bytes) -> None:
        if conn.tail:
            data = conn.tail + data
            conn.tail = b""
        marker = self.marker
        size = len(marker)
        pos = 0
        stamp = 0.0
        while True:
            i = data.find(marker, pos)
            if i < 0:
                break
            j = data.find(b";", i + size)
            if j < 0:
                conn.tail = data[i:]
                return
            seq = int(data[i + size : j])
            pos = j + 1
            bit = 1 << seq
            if not conn.seen & bit:
                conn.seen |= bit
                stamp = stamp or now()
                times = self.received.get(seq)
                if times is None:
                    self.received[seq] = [stamp]
                else:
                    times.append(stamp)
                self.total += 1
        conn.tail = data[max(pos, len(data) - size) :]


class _Conn(asyncio.Protocol):
    def __init__(self, recorder: Recorder, request: bytes) -> None:
        self.recorder = recorder
        self.request = request
        self.ready: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.transport: asyncio.Transport | None = None
        self.head = b""
        self.tail = b""
        self.seen = 0  # bitmap of the broadcasts this connection has had
        self.lost = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        self.transport.write(self.request)

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost = True
        if not self.ready.done():
            self.ready.set_exception(ConnectionError(f"closed before ready: {exc}"))

    def _headers(self, data: bytes, want: bytes) -> bytes | None:
        """Collect the response head; return the bytes after it once it is complete."""
        self.head += data
        end = self.head.find(b"\r\n\r\n")
        if end < 0:
            return None
        status = self.head.split(b"\r\n", 1)[0]
        rest = self.head[end + 4 :]
        self.head = b""
        if want not in status:
            self.ready.set_exception(ConnectionError(status.decode(errors="replace")))
            assert self.transport is not None
            self.transport.close()
            return None
        return rest


class SseConn(_Conn):
    headers_done = False

    def data_received(self, data: bytes) -> None:
        if not self.headers_done:
            rest = self._headers(data, b" 200")
            if rest is None:
                return
            self.headers_done = True
            self.ready.set_result(None)
            data = rest
        self.recorder.scan(self, data)


def _ws_frame(payload: bytes, opcode: int = 1) -> bytes:
    # Client frames must be masked; an all-zero key is legal and leaves the payload as is.
    assert len(payload) < 126
    return bytes((0x80 | opcode, 0x80 | len(payload))) + b"\0\0\0\0" + payload


class EngineIoConn(_Conn):
    """socket.io over engine.io v4 on a raw WebSocket: answers pings, reads ``42`` events."""

    upgraded = False

    def __init__(self, recorder: Recorder, request: bytes) -> None:
        super().__init__(recorder, request)
        self.buf = bytearray()

    def data_received(self, data: bytes) -> None:
        if not self.upgraded:
            rest = self._headers(data, b" 101")
            if rest is None:
                return
            self.upgraded = True
            data = rest
        buf = self.buf
        buf += data
        while len(buf) >= 2:
            length = buf[1] & 0x7F
            start = 2
            if length == 126:
                if len(buf) < 4:
                    return
                length = int.from_bytes(buf[2:4], "big")
                start = 4
            elif length == 127:
                if len(buf) < 10:
                    return
                length = int.from_bytes(buf[2:10], "big")
                start = 10
            if len(buf) < start + length:
                return
            opcode = buf[0] & 0x0F
            payload = bytes(buf[start : start + length])
            del buf[: start + length]
            self._frame(opcode, payload)

    def _frame(self, opcode: int, payload: bytes) -> None:
        assert self.transport is not None
        if opcode == 9:
            self.transport.write(_ws_frame(payload[:125], opcode=10))
        elif opcode == 8:
            self.transport.close()
        elif payload[:2] == b"42":
            self.recorder.scan(self, payload)
        elif payload == b"2":
            self.transport.write(_ws_frame(b"3"))
        elif payload[:1] == b"0":
            self.transport.write(_ws_frame(b"40"))
        elif payload[:2] == b"40" and not self.ready.done():
            self.ready.set_result(None)


def _request(cfg: dict[str, Any]) -> bytes:
    host = f"{cfg['host']}:{cfg['port']}"
    if cfg["protocol"] == "socketio":
        return (
            f"GET /socket.io/?EIO=4&transport=websocket HTTP/1.1\r\nHost: {host}\r\n"
            "Upgrade: websocket\r\nConnection: Upgrade\r\n"
            "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
        ).encode()
    return (
        f"GET {cfg['path']} HTTP/1.1\r\nHost: {host}\r\nAccept: text/event-stream\r\n"
        "Cache-Control: no-cache\r\n\r\n"
    ).encode()


async def open_connections(cfg: dict[str, Any], recorder: Recorder) -> tuple[list[_Conn], float]:
    loop = asyncio.get_running_loop()
    kind = EngineIoConn if cfg["protocol"] == "socketio" else SseConn
    request = _request(cfg)
    limit = asyncio.Semaphore(cfg.get("connect_concurrency", 200))
    conns: list[_Conn] = []
    deadline = now() + cfg.get("connect_timeout_s", 60.0)

    async def one() -> None:
        async with limit:
            if now() > deadline:
                return
            for _attempt in range(3):
                conn = kind(recorder, request)
                try:
                    await loop.create_connection(lambda c=conn: c, cfg["host"], cfg["port"])
                    await asyncio.wait_for(conn.ready, max(0.1, deadline - now()))
                except (OSError, TimeoutError):
                    if conn.transport is not None:
                        conn.transport.close()
                    await asyncio.sleep(0.05)
                    continue
                conns.append(conn)
                return

    started = now()
    await asyncio.gather(*(one() for _ in range(cfg["clients"])))
    return conns, now() - started


class RawPost:
    """HTTP/1.1 POSTs over kept-alive raw connections, one request per connection at a time.

    The trigger's clock starts when the request is written to the socket, so an HTTP
    client's own work before that is not counted as the server's: httpx took ~1.2 ms (p50)
    from ``post()`` to the bytes reaching a server on loopback, against 0.07 ms for a raw
    write (``tests.benchmarks`` e2e, issue 16: the "HTTP in" hop is the server's)."""

    def __init__(self, host: str, port: int, headers: dict[str, str]) -> None:
        self.host, self.port = host, port
        self.head = "".join(f"{k}: {v}\r\n" for k, v in headers.items())
        self._idle: list[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = []

    def request(self, path: str, body: bytes) -> bytes:
        return (
            f"POST {path} HTTP/1.1\r\nHost: {self.host}:{self.port}\r\n{self.head}"
            f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
        ).encode() + body

    async def post(self, request: bytes, sent: Callable[[], None]) -> tuple[int, bytes]:
        """Write ``request`` (``sent`` is called just before), return (status, body). The
        answers it reads: a body of ``Content-Length`` bytes, or none (1xx, 204, 304: the
        peers' ``/broadcast`` answers 204 with no length); anything else is an error."""
        if self._idle:
            reader, writer = self._idle.pop()
        else:
            reader, writer = await asyncio.open_connection(self.host, self.port)
        try:
            sent()
            writer.write(request)
            head = await reader.readuntil(b"\r\n\r\n")
            status = int(head.split(b" ", 2)[1])
            fields = {
                name.strip().lower(): value.strip()
                for name, _, value in (
                    line.partition(b":") for line in head.split(b"\r\n")[1:] if line
                )
            }
            if status < 200 or status in (204, 304):
                body = b""
            elif b"content-length" in fields:
                body = await reader.readexactly(int(fields[b"content-length"]))
            else:
                raise ValueError(f"a {status} answer without Content-Length")
        except BaseException:
            writer.close()
            raise
        if fields.get(b"connection") == b"close":
            writer.close()
        else:
            self._idle.append((reader, writer))
        return status, body

    def close(self) -> None:
        for _, writer in self._idle:
            writer.close()
        self._idle.clear()


class Trigger:
    """Sends broadcast number ``seq``; ``sent[seq]`` is when it left this process."""

    def __init__(self, cfg: dict[str, Any], tag: str) -> None:
        self.cfg = cfg["trigger"]
        self.tag = tag
        self.sent: dict[int, float] = {}
        self.failures: list[str] = []
        self._http: RawPost | None = None
        self._producer: Any = None
        self.host = cfg["host"]
        self.port = cfg["port"]

    def body(self, seq: int) -> bytes:
        return (
            self.cfg["template"]
            .replace("@@MARK@@", f"bseq{self.tag}:{seq};")
            .replace("@@SEQ@@", f"{self.tag}-{seq}")
            .encode()
        )

    async def start(self) -> None:
        if self.cfg["kind"] == "kafka":
            from aiokafka import AIOKafkaProducer

            self._producer = AIOKafkaProducer(
                bootstrap_servers=self.cfg["bootstrap"], linger_ms=0, acks=1
            )
            await self._producer.start()
        else:
            self._http = RawPost(self.host, self.port, self.cfg.get("headers", {}))

    async def stop(self) -> None:
        if self._producer is not None:
            await self._producer.stop()
        if self._http is not None:
            self._http.close()

    async def send(self, seq: int) -> None:
        body = self.body(seq)
        try:
            if self._producer is not None:
                self.sent[seq] = now()
                await self._producer.send(self.cfg["topic"], body, key=self.cfg["key"].encode())
            else:
                assert self._http is not None
                request = self._http.request(self.cfg["path"], body)

                def sent() -> None:
                    self.sent[seq] = now()

                status, answer = await asyncio.wait_for(self._http.post(request, sent), 30.0)
                if status >= 300:
                    self.failures.append(f"{status} {answer[:200].decode(errors='replace')}")
        except Exception as exc:
            self.failures.append(repr(exc))


def percentile(sorted_values: Sequence[float], q: float) -> float | None:
    """The nearest-rank ``q`` quantile of ``sorted_values`` (None when there are none): the
    one percentile of the benchmarks."""
    if not sorted_values:
        return None
    index = min(len(sorted_values) - 1, max(0, math.ceil(q * len(sorted_values)) - 1))
    return sorted_values[index]


def _median(values: list[float]) -> float | None:
    return percentile(sorted(values), 0.5)


async def run_phase(
    phase: dict[str, Any], first_seq: int, trigger: Trigger, recorder: Recorder, clients: int
) -> dict[str, Any]:
    count, rate = phase["count"], phase["rate"]
    seqs = range(first_seq, first_seq + count)
    expected = count * clients
    baseline = recorder.total
    tasks = set()
    t0 = now() + 0.05
    for i, seq in enumerate(seqs):
        delay = t0 + i / rate - now()
        if delay > 0:
            await asyncio.sleep(delay)
        task = asyncio.get_running_loop().create_task(trigger.send(seq))
        tasks.add(task)
        task.add_done_callback(tasks.discard)
    last_send = now()
    deadline = last_send + phase.get("drain_s", 10.0)
    while recorder.total - baseline < expected and now() < deadline:
        await asyncio.sleep(0.02)
    if tasks:
        await asyncio.wait(tasks, timeout=5.0)
    latencies: list[float] = []
    reach95: list[float] = []
    reach_all: list[float] = []
    incomplete = 0
    first_sent = min((trigger.sent[s] for s in seqs if s in trigger.sent), default=t0)
    last_received = first_sent
    need95 = math.ceil(0.95 * clients)
    for seq in seqs:
        sent = trigger.sent.get(seq)
        times = sorted(recorder.received.get(seq, ()))
        if sent is None:
            incomplete += 1
            continue
        lat = [t - sent for t in times]
        latencies.extend(lat)
        if times:
            last_received = max(last_received, times[-1])
        if len(lat) >= need95:
            reach95.append(lat[need95 - 1])
        if len(lat) >= clients:
            reach_all.append(lat[clients - 1])
        else:
            incomplete += 1
    latencies.sort()
    delivered = len(latencies)
    span = last_received - first_sent
    # per broadcast: sent, first, median and last receipt (this process's perf clock), for a
    # caller that lines them up with the hops' own timestamps (tests.benchmarks.e2e)
    per_seq = {}
    if phase.get("per_seq"):
        for seq in seqs:
            times = sorted(recorder.received.get(seq, ()))
            if seq in trigger.sent and times:
                middle = times[(len(times) - 1) // 2]
                per_seq[seq] = [trigger.sent[seq], times[0], middle, times[-1], len(times)]
    return {
        "per_seq": per_seq,
        "broadcasts": count,
        "offered_rate": rate,
        "expected": expected,
        "delivered": delivered,
        "incomplete_broadcasts": incomplete,
        "deliveries_per_s": delivered / span if span > 0 else None,
        "reach95_ms_median": _ms(_median(reach95)),
        "reach_all_ms_median": _ms(_median(reach_all)),
        "reach_all_ms_max": _ms(max(reach_all) if reach_all else None),
        "p50_ms": _ms(percentile(latencies, 0.50)),
        "p99_ms": _ms(percentile(latencies, 0.99)),
        "p999_ms": _ms(percentile(latencies, 0.999)),
        "max_ms": _ms(latencies[-1] if latencies else None),
    }


def _ms(seconds: float | None) -> float | None:
    return None if seconds is None else round(seconds * 1000.0, 2)


async def run(cfg: dict[str, Any], read_line: Callable[[], Any]) -> dict[str, Any]:
    tag = cfg.get("tag") or os.urandom(3).hex()
    recorder = Recorder(tag)
    conns, connect_s = await open_connections(cfg, recorder)
    print(f"READY {len(conns)}", flush=True)
    go = await read_line()
    if not go.startswith("GO"):
        return {"error": f"expected GO, got {go!r}"}
    trigger = Trigger(cfg, tag)
    await trigger.start()
    phases: dict[str, Any] = {}
    seq = 1
    # No collections while measuring: with 1,000 connections one took up to 17 ms here (12
    # with the heap frozen), a stall in every receive time taken during it. Reference
    # counting still frees what the phases drop; cycles wait for the end.
    gc.collect()
    gc.disable()
    try:
        for phase in cfg["phases"]:
            alive = sum(1 for c in conns if not c.lost)
            phases[phase["name"]] = await run_phase(phase, seq, trigger, recorder, alive)
            phases[phase["name"]]["clients"] = alive
            seq += phase["count"]
    finally:
        gc.enable()
        await trigger.stop()
        for conn in conns:
            if conn.transport is not None:
                conn.transport.close()
    return {
        "wall_minus_perf": time.time() - now(),  # turns this process's perf times into wall
        "tag": tag,
        "connected": len(conns),
        "connect_s": round(connect_s, 3),
        "lost": sum(1 for c in conns if c.lost),
        "trigger_failures": trigger.failures[:5],
        "trigger_failure_count": len(trigger.failures),
        "phases": phases,
    }


async def _main() -> None:
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)

    async def read_line() -> str:
        return (await reader.readline()).decode()

    cfg = json.loads(await read_line())
    result = await asyncio.wait_for(run(cfg, read_line), cfg.get("timeout_s", 300.0))
    print(json.dumps(result), flush=True)


def main() -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    if uvloop is not None:
        uvloop.install()
    asyncio.run(_main())


if __name__ == "__main__":
    main()
