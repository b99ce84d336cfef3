"""A hostile vendor on 127.0.0.1: a raw-socket HTTP/1.1 server whose per-test `handler(request, conn)`
writes whatever bytes it likes, whenever it likes (trickled headers, endless streams, lies about
lengths, echoed secrets), plus the helpers the adversarial tests share to run k2vv in a child process
with a bounded wall time and a measured peak RSS.

    def handler(request, conn):
        conn.send_json(completion("f", '{"n": 1}'))
    with HostileVendor(handler) as v:
        k2vv.main(["run", FILE, "--base-url", v.url, ...])
        assert v.count == 1

Sockets are non-blocking and every wait goes through `select` with a short tick, so `stop()` (which
closes the listener and shuts down every client socket) ends every thread within a tick, even one
that is in the middle of an endless stream. A handler that raises (a client that hung up, a stop)
just ends its connection: the vendor never prints a traceback."""
from __future__ import annotations

import gzip
import hashlib
import json
import os
import resource
import select
import socket
import struct
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path


ROOT = Path(__file__).resolve().parents[2]
K2VV = ROOT / "k2vv.py"

TICK = 0.05  # seconds between checks of the stop flag in every wait
MAX_HEAD = 64 * 1024  # request headers larger than this end the connection


class Stopped(Exception):
    """The vendor is stopping, or the client hung up: the handler's work is over."""


@dataclass
class Request:
    """One request as the vendor read it. `headers` keys are lower-cased; `json` is the parsed body
    (None when it is not JSON); `attempt` counts requests with this exact body (1-based)."""
    method: str
    path: str
    headers: dict
    body: bytes
    json: object = None
    number: int = 0
    attempt: int = 0
    arrived: float = field(default_factory=time.monotonic)

    @property
    def stream(self) -> bool:
        return isinstance(self.json, dict) and self.json.get("stream") is True


# ---- answers: pure helpers that build bodies, SSE events and raw HTTP bytes -------------------------

def completion(name: str = "f", arguments: str = "{}", *, content: str = "", finish_reason: str = "tool_calls",
               model: str = "hostile-model") -> dict:
    """A valid non-stream `chat.completion` with one tool call (or none: finish_reason 'stop', name None)."""
    message = {"role": "assistant", "content": content}
    if name is not None:
        message["tool_calls"] = [{"id": f"functions.{name}:0", "type": "function",
                                  "function": {"name": name, "arguments": arguments}}]
    return {"id": "chatcmpl-hostile", "object": "chat.completion", "created": 1735689600, "model": model,
            "choices": [{"index": 0, "message": message, "finish_reason": finish_reason}],
            "usage": {"prompt_tokens": 10, "completion_tokens": 5, "total_tokens": 15}}


def stream_chunks(name: str = "f", arguments: str = "{}", *, content: str = "", finish_reason: str = "tool_calls",
                  usage: bool = True) -> list:
    """The `chat.completion.chunk` objects of the same answer as `completion`, as the official API
    streams them: role, content, call header, argument fragments, finish, usage-only chunk."""
    base = {"id": "chatcmpl-hostile", "object": "chat.completion.chunk", "created": 1735689600,
            "model": "hostile-model"}

    def chunk(delta, finish=None):
        return dict(base, choices=[{"index": 0, "delta": delta, "finish_reason": finish}])

    chunks = [chunk({"role": "assistant", "content": ""})]
    if content:
        chunks.append(chunk({"content": content}))
    if name is not None:
        chunks.append(chunk({"tool_calls": [{"index": 0, "id": f"functions.{name}:0", "type": "function",
                                             "function": {"name": name, "arguments": ""}}]}))
        third = max(1, len(arguments) // 3)
        for i in range(0, len(arguments), third):
            chunks.append(chunk({"tool_calls": [{"index": 0, "function": {"arguments": arguments[i:i + third]}}]}))
    chunks.append(chunk({}, finish_reason))
    if usage:
        chunks.append(dict(base, choices=[], usage={"prompt_tokens": 10, "completion_tokens": 5,
                                                    "total_tokens": 15}))
    return chunks


def sse_event(obj) -> bytes:
    """One SSE event: `data: <json>\\n\\n` (a str or bytes payload is sent as it is)."""
    if isinstance(obj, bytes):
        data = obj
    elif isinstance(obj, str):
        data = obj.encode("utf-8")
    else:
        data = json.dumps(obj, ensure_ascii=False).encode("utf-8")
    return b"data: " + data + b"\n\n"


def sse_body(events, done: bool = True) -> bytes:
    return b"".join(sse_event(e) for e in events) + (b"data: [DONE]\n\n" if done else b"")


def chunk_frame(data: bytes) -> bytes:
    """One frame of chunked transfer encoding (an empty `data` is the last frame)."""
    return b"%x\r\n" % len(data) + data + b"\r\n"


LAST_CHUNK = b"0\r\n\r\n"


def http_head(status: int = 200, headers=(), reason: str | None = None) -> bytes:
    reason = reason or {200: "OK", 400: "Bad Request", 429: "Too Many Requests", 500: "Internal Server Error",
                        502: "Bad Gateway", 503: "Service Unavailable"}.get(status, "Status")
    lines = [f"HTTP/1.1 {status} {reason}"] + [f"{k}: {v}" for k, v in headers]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


def http_response(status: int, body: bytes, content_type: str = "application/json", headers=()) -> bytes:
    """A whole response with Content-Length and Connection: close."""
    return http_head(status, [("Content-Type", content_type), ("Content-Length", str(len(body))),
                              ("Connection", "close"), *headers]) + body


def gzipped(data: bytes) -> bytes:
    return gzip.compress(data, mtime=0)


# ---- the connection a handler writes to ------------------------------------------------------------

class Conn:
    """The client socket of one request. Every method raises Stopped when the vendor stops or the
    client has gone, so a handler's endless loop ends by itself."""

    def __init__(self, sock: socket.socket, vendor: "HostileVendor"):
        self.sock, self.vendor = sock, vendor
        self.keep_alive = False  # True: read another request on this connection after the handler
        self.sent = 0  # bytes written so far on this connection

    @property
    def stopped(self) -> bool:
        return self.vendor.stopping.is_set()

    def send(self, data: bytes) -> None:
        view = memoryview(data)
        while view:
            if self.stopped:
                raise Stopped("the vendor is stopping")
            try:
                _, writable, _ = select.select([], [self.sock], [], TICK)
                if not writable:
                    continue
                n = self.sock.send(view)
            except (BlockingIOError, InterruptedError):
                continue
            except OSError as err:
                raise Stopped(f"the client hung up ({err})") from None
            view = view[n:]
            self.sent += n

    def sleep(self, seconds: float) -> None:
        """Wait, promptly ending (Stopped) when the vendor stops."""
        if self.vendor.stopping.wait(seconds):
            raise Stopped("the vendor is stopping")

    def wait_closed(self, timeout: float | None = None) -> bool:
        """Hold the connection open, sending nothing, until the client hangs up (True), the vendor
        stops (Stopped), or `timeout` seconds pass (False)."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while deadline is None or time.monotonic() < deadline:
            if self.stopped:
                raise Stopped("the vendor is stopping")
            try:
                readable, _, _ = select.select([self.sock], [], [], TICK)
                if readable and not self.sock.recv(65536):
                    return True
            except (BlockingIOError, InterruptedError):
                continue
            except OSError:
                return True
        return False

    # -- whole answers --
    def send_head(self, status: int = 200, headers=(), reason: str | None = None) -> None:
        self.send(http_head(status, headers, reason))

    def send_json(self, obj, status: int = 200, headers=(), content_type: str = "application/json") -> None:
        """A JSON (or raw bytes) body with Content-Length; the connection then closes."""
        body = obj if isinstance(obj, bytes) else json.dumps(obj, ensure_ascii=False).encode("utf-8")
        self.send(http_response(status, body, content_type, headers))

    def send_sse(self, events, framing: str = "chunked", done: bool = True, headers=(),
                 content_type: str = "text/event-stream") -> None:
        """An SSE answer, `framing` 'chunked' (one frame per event), 'length' (Content-Length) or
        'close' (neither: the body ends when the connection closes)."""
        payloads = [sse_event(e) for e in events] + ([b"data: [DONE]\n\n"] if done else [])
        self.start_stream(framing, headers, content_type, length=sum(map(len, payloads)))
        for payload in payloads:
            self.stream_write(payload, framing)
        self.end_stream(framing)

    def start_stream(self, framing: str, headers=(), content_type: str = "text/event-stream",
                     length: int | None = None) -> None:
        head = [("Content-Type", content_type), ("Cache-Control", "no-cache"), ("Connection", "close")]
        if framing == "chunked":
            head.append(("Transfer-Encoding", "chunked"))
        elif framing == "length":
            head.append(("Content-Length", str(length)))
        elif framing != "close":
            raise ValueError(f"unknown framing {framing!r}")
        self.send_head(200, [*head, *headers])

    def stream_write(self, data: bytes, framing: str) -> None:
        self.send(chunk_frame(data) if framing == "chunked" else data)

    def end_stream(self, framing: str) -> None:
        if framing == "chunked":
            self.send(LAST_CHUNK)

    def reset(self) -> None:
        """Close with a TCP RST (SO_LINGER 0), like a crashed upstream."""
        try:
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        except OSError:
            pass
        self.vendor._drop(self.sock)


# ---- the server -----------------------------------------------------------------------------------

class HostileVendor:
    """`with HostileVendor(handler) as v:` serves on v.url (http://127.0.0.1:PORT/v1); every request
    is recorded in `v.received` before `handler(request, conn)` runs. `handler` may be swapped at
    any time (`v.handler = ...`)."""

    def __init__(self, handler):
        self.handler = handler
        self.stopping = threading.Event()
        self._lock = threading.Lock()
        self._received: list[Request] = []
        self._attempts: dict[str, int] = {}
        self._clients: set[socket.socket] = set()
        self._threads: list[threading.Thread] = []
        self.handler_errors: list[str] = []  # exceptions of the handler other than Stopped (a broken test)
        self._listener = None
        self.port = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    @property
    def received(self) -> list:
        with self._lock:
            return list(self._received)

    @property
    def count(self) -> int:
        with self._lock:
            return len(self._received)

    def start(self) -> "HostileVendor":
        self._listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._listener.bind(("127.0.0.1", 0))
        self._listener.listen(128)
        self._listener.settimeout(TICK)
        self.port = self._listener.getsockname()[1]
        self._spawn(self._accept_loop, "hostile-accept")
        return self

    def stop(self) -> None:
        """Close the listener and every client socket; every thread ends within a tick or two."""
        self.stopping.set()
        with self._lock:
            clients = list(self._clients)
            threads = list(self._threads)
        for sock in clients:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        for thread in threads:
            thread.join(5)
        if self._listener is not None:
            self._listener.close()
        for sock in clients:
            sock.close()
        lingering = [t.name for t in threads if t.is_alive()]
        assert not lingering, f"hostile vendor threads still alive after stop(): {lingering}"

    def __enter__(self) -> "HostileVendor":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    def _spawn(self, target, name, *args) -> None:
        thread = threading.Thread(target=target, args=args, name=name, daemon=True)
        with self._lock:
            self._threads.append(thread)
        thread.start()

    def _accept_loop(self) -> None:
        while not self.stopping.is_set():
            try:
                sock, _ = self._listener.accept()
            except socket.timeout:
                continue
            except OSError:
                return
            sock.setblocking(False)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            with self._lock:
                if self.stopping.is_set():
                    sock.close()
                    return
                self._clients.add(sock)
            self._spawn(self._serve, "hostile-conn", sock)

    def _drop(self, sock: socket.socket) -> None:
        with self._lock:
            self._clients.discard(sock)
        try:
            sock.close()
        except OSError:
            pass

    def _serve(self, sock: socket.socket) -> None:
        buffer = bytearray()
        try:
            while not self.stopping.is_set():
                request = self._read_request(sock, buffer)
                if request is None:
                    return
                conn = Conn(sock, self)
                try:
                    self.handler(request, conn)
                except Stopped:
                    return
                except Exception as err:  # noqa: BLE001 - a bug in a test's handler: record it, hang up
                    self.handler_errors.append(repr(err))
                    return
                if not conn.keep_alive or sock.fileno() < 0:
                    return
        finally:
            if sock.fileno() >= 0:
                try:
                    sock.shutdown(socket.SHUT_WR)
                except OSError:
                    pass
            self._drop(sock)

    def _recv(self, sock: socket.socket, buffer: bytearray) -> bool:
        """Append what arrives to `buffer`; False when the client hung up or the vendor stops."""
        while not self.stopping.is_set():
            try:
                readable, _, _ = select.select([sock], [], [], TICK)
                if not readable:
                    continue
                data = sock.recv(65536)
            except (BlockingIOError, InterruptedError):
                continue
            except (OSError, ValueError):
                return False
            if not data:
                return False
            buffer += data
            return True
        return False

    def _read_request(self, sock: socket.socket, buffer: bytearray) -> Request | None:
        while b"\r\n\r\n" not in buffer:
            if len(buffer) > MAX_HEAD or not self._recv(sock, buffer):
                return None
        end = buffer.index(b"\r\n\r\n")
        head = bytes(buffer[:end]).decode("latin-1").split("\r\n")
        del buffer[:end + 4]
        try:
            method, path, _ = head[0].split(" ", 2)
        except ValueError:
            return None
        headers = {}
        for line in head[1:]:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
        if "chunked" in headers.get("transfer-encoding", "").lower():
            body = bytearray()
            while True:
                while b"\r\n" not in buffer:
                    if not self._recv(sock, buffer):
                        return None
                line_end = buffer.index(b"\r\n")
                size = int(bytes(buffer[:line_end]).split(b";")[0].strip() or b"0", 16)
                while len(buffer) < line_end + 2 + size + 2:
                    if not self._recv(sock, buffer):
                        return None
                body += buffer[line_end + 2:line_end + 2 + size]
                del buffer[:line_end + 2 + size + 2]
                if size == 0:
                    break
            body = bytes(body)
        else:
            length = int(headers.get("content-length") or 0)
            while len(buffer) < length:
                if not self._recv(sock, buffer):
                    return None
            body = bytes(buffer[:length])
            del buffer[:length]
        try:
            parsed = json.loads(body) if body else None
        except ValueError:
            parsed = None
        digest = hashlib.sha256(body).hexdigest()
        with self._lock:
            self._attempts[digest] = attempt = self._attempts.get(digest, 0) + 1
            request = Request(method, path, headers, body, parsed, len(self._received) + 1, attempt)
            self._received.append(request)
        return request


# ---- test sets ------------------------------------------------------------------------------------

def tool(name: str = "f", parameters=None) -> dict:
    return {"type": "function", "function": {"name": name, "description": "a tool",
                                             "parameters": {"type": "object"} if parameters is None else parameters}}


def case_line(text: str = "call the tool", parameters=None, *, name: str = "f", stream: bool = False,
              forced: bool = False) -> dict:
    """One test-set line: a user message and one tool (`forced`: tool_choice names it)."""
    line = {"messages": [{"role": "user", "content": text}], "tools": [tool(name, parameters)]}
    if stream:
        line["stream"] = True
    if forced:
        line["tool_choice"] = {"type": "function", "function": {"name": name}}
    return line


def write_jsonl(path: Path, rows) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def read_results(out: Path) -> list:
    return [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines() if line.strip()]


def read_summary(out: Path) -> dict:
    return json.loads((out / "summary.json").read_text())


# ---- k2vv in a child process ------------------------------------------------------------------------

@dataclass
class ChildResult:
    returncode: int | None  # None: killed at the deadline
    stdout: str
    stderr: str
    elapsed: float
    maxrss_kib: int  # peak RSS of k2vv in KiB (with measure_rss; 0 otherwise)
    timed_out: bool


def k2vv_command(*args) -> list:
    return [sys.executable, str(K2VV), *map(str, args)]


# Runs the command in argv[2:] and writes its pid, then its own peak RSS (wait4's ru_maxrss, KiB), to
# argv[1]. A child forked straight from pytest would start its life with pytest's RSS (fork copies it and
# Linux keeps the high-water mark across exec); forked from this ~10 MB launcher, it starts near nothing.
_LAUNCHER = """
import os, sys
report, argv = sys.argv[1], sys.argv[2:]
pid = os.posix_spawn(argv[0], argv, os.environ)
with open(report, "w") as fh:
    fh.write(f"{pid}\\n")
_, status, usage = os.wait4(pid, 0)
with open(report, "a") as fh:
    fh.write(f"{usage.ru_maxrss}\\n")
code = os.waitstatus_to_exitcode(status)
sys.exit(code if code >= 0 else 128 - code)
"""


def start_k2vv(args, cwd: Path, *, env=None, limits=None, prefix=(), measure_rss: bool = False):
    """Popen of k2vv in a session of its own, stdout/stderr going to files (no pipe can fill and stall
    it). `limits`: {resource.RLIMIT_*: value} set before exec, a guard so that a bug in the code under
    test fails the test instead of filling the machine's memory or disk. `measure_rss`: k2vv runs under
    _LAUNCHER, so its peak RSS is its own."""
    stamp = time.monotonic_ns()
    stdout_path, stderr_path = Path(cwd) / f"child-{stamp}.out", Path(cwd) / f"child-{stamp}.err"
    command = [*prefix, *k2vv_command(*args)]
    report = None
    if measure_rss:
        report = Path(cwd) / f"child-{stamp}.rss"
        command = [sys.executable, "-S", "-c", _LAUNCHER, str(report), *command]

    def preexec():
        for which, value in (limits or {}).items():
            resource.setrlimit(which, (value, value))
    out, err = open(stdout_path, "wb"), open(stderr_path, "wb")
    try:
        proc = subprocess.Popen(command, cwd=cwd, stdout=out, stderr=err, stdin=subprocess.DEVNULL, env=env,
                                preexec_fn=preexec if limits else None, start_new_session=True)
    finally:
        out.close()
        err.close()
    proc.stdout_path, proc.stderr_path, proc.rss_report = stdout_path, stderr_path, report
    return proc


def _hwm_kib(pid: int) -> int:
    """VmHWM of a live process (KiB), 0 when it is gone."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    except (OSError, ValueError):
        pass
    return 0


def finish_k2vv(proc, timeout: float, started: float | None = None) -> ChildResult:
    """Wait for `proc` at most `timeout` seconds from `started`, then kill its whole session."""
    started = time.monotonic() if started is None else started
    timed_out = False
    try:
        proc.wait(timeout=max(0.0, started + timeout - time.monotonic()))
    except subprocess.TimeoutExpired:
        timed_out = True
    maxrss = 0
    report = proc.rss_report
    if timed_out and report is not None and report.exists():
        lines = report.read_text().split()
        maxrss = _hwm_kib(int(lines[0])) if lines else 0
    if timed_out:
        try:
            os.killpg(proc.pid, 9)
        except ProcessLookupError:
            pass
        proc.wait()
    elapsed = time.monotonic() - started
    if report is not None and not timed_out:
        lines = report.read_text().split() if report.exists() else []
        maxrss = int(lines[1]) if len(lines) > 1 else 0
    return ChildResult(None if timed_out else proc.returncode,
                       Path(proc.stdout_path).read_text(errors="replace"),
                       Path(proc.stderr_path).read_text(errors="replace"),
                       elapsed, maxrss, timed_out)


def run_k2vv(args, cwd: Path, timeout: float = 60.0, **kw) -> ChildResult:
    started = time.monotonic()
    return finish_k2vv(start_k2vv(args, cwd, **kw), timeout, started)


def describe(result: ChildResult) -> str:
    """What a failed assertion about a child shows: its code, time and the end of its stderr."""
    state = f"killed after {result.elapsed:.1f} s (timeout)" if result.timed_out else \
        f"exit {result.returncode} after {result.elapsed:.1f} s"
    rss = f", peak RSS {result.maxrss_kib // 1024} MiB" if result.maxrss_kib else ""
    return f"{state}{rss}; stderr:\n{result.stderr[-3000:]}"
