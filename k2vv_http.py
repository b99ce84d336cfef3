"""k2vv_http — one bounded HTTP exchange with a vendor that may be hostile, and the pace of many.

Whatever a vendor sends, an attempt ends within `--timeout` (a thread shuts the socket down at the
deadline, so trickled headers, trickled bodies and endless keep-alives end too), holds at most
`--max-answer-bytes`, and becomes an answer or one of k2vv's error classes (DESIGN §7): the one
place where `requests`, urllib3 and socket exceptions are read. `Pace` finds how many requests the
vendor sustains. Imports nothing from k2vv: what an answer means is the caller's `read_answer`.
"""
from __future__ import annotations

import contextlib
import json
import random
import re
import socket
import threading
import time
from collections import Counter
from dataclasses import dataclass
from typing import Callable, Iterable, NamedTuple

# Statuses worth another attempt (DESIGN §7). 529 is Anthropic-style "overloaded", seen at gateways.
RETRY_STATUSES = frozenset({408, 409, 425, 429, 500, 502, 503, 504, 529})
# A vendor saying "too many": the runner's pace shrinks (Pace). While the run as a whole makes
# progress, a 429 does not count against a request's retries (503/529 still do: they may be down).
LIMITED_STATUSES = frozenset({429, 503, 529})
# Definitive rejections of the request itself: the vendor's answer, cached and scored as `rejected`.
REJECT_STATUSES = frozenset({400, 413, 422})
# Headers a gateway names the upstream in (the body's `provider` field wins when both say).
ROUTING_HEADERS = ("x-openrouter-provider", "openrouter-provider", "x-provider")
MAX_ANSWER_BYTES = 16 * 2 ** 20  # one answer's body, decoded: more is `too_large`, never held in memory
READ_SIZE = 65536  # bytes asked of the socket at a time


class Transient(Exception):
    """A failed attempt worth retrying: error class and an optional server-requested delay.
    `limited`: the vendor said "too many" (429/503/529, or a spent rate-limit budget)."""
    def __init__(self, error_class: str, retry_after: float | None = None, status: int | None = None,
                 limited: bool = False, budget: float | None = None):
        super().__init__(error_class)
        self.error_class, self.retry_after, self.status = error_class, retry_after, status
        self.limited, self.budget = limited, budget  # budget: seconds until a spent budget is back (all wait)


class EndpointRefused(Exception):
    """An answer that means the whole run may not work: a refused key, a wrong endpoint, a URL or
    header requests cannot even send. `status` is 0 for setup errors found before any answer;
    `text` is the vendor's own (redacted) message, if any."""
    def __init__(self, error_class: str, status: int, text: str = ""):
        super().__init__(error_class)
        self.error_class, self.status, self.text = error_class, status, text


class NotRetryable(Exception):
    """A failed request that another attempt will not fix (e.g. 402 out of credits, 405): it is
    journaled with the provider's (redacted) reason, never cached, retried by the next run."""
    def __init__(self, error_class: str, text: str):
        super().__init__(error_class)
        self.error_class, self.text = error_class, text


def parse_retry_after(value: str | None, now: float) -> float | None:
    """Seconds to wait from a Retry-After header (seconds or an HTTP date)."""
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        from email.utils import parsedate_to_datetime
        return max(0.0, parsedate_to_datetime(value).timestamp() - now)
    except (TypeError, ValueError, IndexError):
        return None


def backoff_delay(attempt: int, retry_after: float | None, rng: random.Random,
                  base: float = 1.0, cap: float = 60.0) -> float:
    """Capped exponential backoff with full jitter; a server's Retry-After wins (capped too)."""
    if retry_after is not None:
        return min(retry_after, cap)
    return rng.uniform(0, min(cap, base * 2 ** (attempt - 1)))


def mask_secrets(text: str, secrets: Iterable[str | None]) -> str:
    """`text` with every secret's value replaced by `***`."""
    for secret in secrets:
        if secret:
            text = text.replace(secret, "***")
    return text


def redact(text: str, secrets: Iterable[str], limit: int = 2000) -> str:
    """Provider text with any secret and anything shaped like a key masked, cut to `limit` chars."""
    return re.sub(r"\b(sk|pk|rk|key)-[A-Za-z0-9_\-]{8,}", r"\1-***", mask_secrets(text, secrets))[:limit]


def redact_bytes(data: bytes, secrets: Iterable) -> bytes:
    """`data` with every secret (str or UTF-8 bytes) replaced by `***`: what a vendor echoes of the
    key never reaches the cache, the results or the summary."""
    for secret in secrets:
        if secret:
            data = data.replace(secret.encode("utf-8") if isinstance(secret, str) else secret, b"***")
    return data


def decoded_where_secret(exchange: dict, secrets: tuple) -> dict:
    """`exchange` with each stream payload or error text that hides a secret behind JSON escapes
    (`\\u0073k-…`: the same string once parsed, but not the same bytes) kept in its decoded form,
    the same JSON value, so the byte mask that follows finds the secret. Text that is not JSON, or
    holds no secret once decoded, stays as the vendor wrote it."""
    def decoded(text):
        if not isinstance(text, str) or "\\u" not in text:
            return text
        try:
            plain = json.dumps(json.loads(text), ensure_ascii=False)
        except (ValueError, RecursionError):
            return text
        return plain if any(secret in plain for secret in secrets) else text
    if not secrets or not any(isinstance(exchange.get(k), (list, str)) for k in ("sse_lines", "text")):
        return exchange
    out = dict(exchange)
    if isinstance(out.get("sse_lines"), list):
        out["sse_lines"] = [decoded(line) for line in out["sse_lines"]]
    if isinstance(out.get("text"), str):
        out["text"] = decoded(out["text"])
    return out


_KEPT_HEADERS = ("content-type", "x-request-id", "request-id", *ROUTING_HEADERS, "x-model", "server", "retry-after")


def client_settings(url: str) -> dict:
    """What requests would read from the environment for every request, read once for the
    provider's URL: proxies (HTTP(S)_PROXY, ALL_PROXY, NO_PROXY) and a CA bundle
    (REQUESTS_CA_BUNDLE, CURL_CA_BUNDLE). Sessions then run with trust_env off: per request it
    scanned os.environ twice and looked for ~/.netrc (BENCHMARKS.md §2), and a ~/.netrc entry for
    the provider's host silently replaced the API key's Authorization header with its login."""
    import requests
    with requests.Session() as probe:
        env = probe.merge_environment_settings(url, {}, None, None, None)
    return {"proxies": env["proxies"], "verify": env["verify"]}


class Attempt:
    """One HTTP attempt's deadline and, once connected, its socket. `expire` (the Deadlines
    thread) shuts the socket down, so a read blocked on a vendor that trickles bytes or sends
    nothing returns at once; the attempt then fails as `timeout`."""

    def __init__(self, deadline: float):
        self.deadline = deadline
        self.expired = self.finished = False
        self._sock = None
        self._lock = threading.Lock()

    def bind(self, sock) -> None:
        with self._lock:
            self._sock = sock
            if self.expired:
                _shut(sock)

    def expire(self) -> None:
        with self._lock:
            if not self.finished:
                self.expired = True
                _shut(self._sock)

    def finish(self) -> None:
        with self._lock:
            self.finished, self._sock = True, None


def _shut(sock) -> None:
    """Shut a socket down under whatever reads it (the plain socket's own shutdown: an SSL
    socket's would tear down TLS state another thread is using)."""
    if sock is not None:
        with contextlib.suppress(OSError, ValueError):
            socket.socket.shutdown(sock, socket.SHUT_RDWR)


class Deadlines:
    """One thread that expires attempts at their deadlines (`--timeout` bounds the whole answer:
    headers, body, every stream, keep-alive comments included; a per-read timeout alone lets a
    vendor that sends a byte now and then hold a request for ever). It runs while attempts are in
    flight and ends when none is: O(in flight) work per wake-up."""

    def __init__(self):
        self._active: set = set()
        self._cond = threading.Condition()
        self._thread: threading.Thread | None = None

    @contextlib.contextmanager
    def watching(self, attempt: Attempt):
        with self._cond:
            self._active.add(attempt)
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="k2vv-deadlines", daemon=True)
                self._thread.start()
            self._cond.notify()
        try:
            yield attempt
        finally:
            attempt.finish()
            with self._cond:
                self._active.discard(attempt)
                self._cond.notify()

    def _run(self) -> None:
        while True:
            with self._cond:
                if not self._active:
                    self._thread = None
                    return
                first = min(self._active, key=lambda a: a.deadline)
                wait = first.deadline - time.monotonic()
                if wait > 0:
                    self._cond.wait(wait)
                    continue
                self._active.discard(first)
            first.expire()


_ATTEMPT = threading.local()  # the attempt the current thread is making: its connection binds to it
_ADAPTER_CLASS = None


def bounded_adapter():
    """A requests adapter whose connections hand their socket to the current thread's Attempt, on
    connect and on every request (a kept-alive connection is reused without connecting)."""
    global _ADAPTER_CLASS
    if _ADAPTER_CLASS is not None:
        return _ADAPTER_CLASS()
    import requests.adapters
    from urllib3.connection import HTTPConnection, HTTPSConnection
    from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool

    def bind(sock):
        attempt = getattr(_ATTEMPT, "current", None)
        if attempt is not None and sock is not None:
            attempt.bind(sock)

    class Bound:
        def connect(self):
            super().connect()
            bind(self.sock)

        def request(self, *args, **kwargs):
            bind(self.sock)
            return super().request(*args, **kwargs)

    pools = {"http": type("BoundHTTPPool", (HTTPConnectionPool,),
                          {"ConnectionCls": type("BoundHTTPConnection", (Bound, HTTPConnection), {})}),
             "https": type("BoundHTTPSPool", (HTTPSConnectionPool,),
                           {"ConnectionCls": type("BoundHTTPSConnection", (Bound, HTTPSConnection), {})})}

    class BoundedAdapter(requests.adapters.HTTPAdapter):
        def init_poolmanager(self, *args, **kwargs):
            super().init_poolmanager(*args, **kwargs)
            self.poolmanager.pool_classes_by_scheme = pools

        def proxy_manager_for(self, proxy, **kwargs):
            manager = super().proxy_manager_for(proxy, **kwargs)
            manager.pool_classes_by_scheme = pools
            return manager

    _ADAPTER_CLASS = BoundedAdapter
    return BoundedAdapter()


class TooLarge(Exception):
    pass


def body_chunks(resp, cap: int):
    """The decoded body as it arrives (a chunk as soon as the socket has one, chunked or not: time
    to first byte is the first byte), never more than `cap` bytes in all."""
    raw = resp.raw
    if raw.chunked and raw.supports_chunked_reads():
        source = raw.read_chunked(READ_SIZE, decode_content=True)
    else:
        source = iter(lambda: raw.read1(READ_SIZE, decode_content=True), b"")
    total = 0
    for chunk in source:
        total += len(chunk)
        if total > cap:
            raise TooLarge(total)
        if chunk:
            yield chunk


def send_once(session, url: str, payload: bytes, headers: dict, stream: bool, timeout: float,
              secrets: tuple, deadlines: Deadlines, read_answer: Callable[[bytes, bool], tuple],
              cap: int = MAX_ANSWER_BYTES) -> tuple[dict, object, float | None]:
    """One HTTP attempt -> (final exchange dict, its parsed answer or None for a rejection, seconds
    until a spent rate-limit budget is back or None), or Transient/EndpointRefused/NotRetryable.
    `read_answer(body, is_event_stream)` turns a 200's body (secrets masked) into (exchange, parsed)
    or raises Transient ("truncated", "bad_body"): the parse that proves an answer complete is
    returned, so the runner scores it without parsing it again. The one place where `requests` and socket exceptions become k2vv error classes (STYLE
    §5). Bounded: `timeout` seconds for the whole answer (Deadlines), `cap` bytes of body
    (`too_large`). Timed from before sending to the last byte, before any parsing."""
    started = time.monotonic()
    with deadlines.watching(Attempt(started + timeout)) as attempt:
        exchange, parsed, kept, ttfb, done, budget = _attempt(session, url, payload, headers, stream, secrets, cap,
                                                              timeout, attempt, read_answer)
    exchange["headers"] = kept
    exchange["timing"] = {"ttfb_ms": round(((ttfb or done) - started) * 1000, 1),
                          "total_ms": round((done - started) * 1000, 1)}
    return exchange, parsed, budget


def _attempt(session, url, payload, headers, stream, secrets, cap, timeout, attempt, read_answer):
    """send_once's attempt, inside its deadline: (exchange, parsed, kept headers, time of first byte)."""
    import http.client
    import requests
    import urllib3
    _ATTEMPT.current = attempt
    ttfb = None
    try:
        try:
            resp = session.post(url, data=payload, headers=headers, stream=True,
                                timeout=(min(30.0, timeout), timeout))
        except (requests.exceptions.InvalidURL, requests.exceptions.MissingSchema,
                requests.exceptions.InvalidSchema, requests.exceptions.InvalidHeader):
            raise EndpointRefused("setup", 0) from None  # the message may quote the header value: never keep it
        try:
            kept = {k: redact(resp.headers[k], secrets, 500) for k in _KEPT_HEADERS if k in resp.headers}
            status = resp.status_code
            if status != 200:
                head = b""
                for chunk in body_chunks(resp, cap):
                    head += chunk
                    if len(head) >= 8192:
                        break
                text = redact(head[:8192].decode("utf-8", "replace"), secrets)
                if status in (401, 403, 404):
                    raise EndpointRefused(f"http_{status}", status, text)
                if status in RETRY_STATUSES or status >= 500:
                    budget = ratelimit_wait(resp.headers, time.time())
                    waits = [w for w in (parse_retry_after(resp.headers.get("retry-after"), time.time()), budget)
                             if w is not None]
                    raise Transient(f"http_{status}", max(waits) if waits else None, status,
                                    limited=status in LIMITED_STATUSES or budget is not None, budget=budget)
                if status not in REJECT_STATUSES:
                    raise NotRetryable(f"http_{status}", text)
                exchange, parsed, last_byte, budget = {"status": status, "text": text}, None, time.monotonic(), None
            else:
                chunks = []
                for chunk in body_chunks(resp, cap):
                    ttfb = ttfb or time.monotonic()
                    chunks.append(chunk)
                last_byte = time.monotonic()  # before parsing: k2vv's own CPU is not the vendor's latency
                budget = ratelimit_wait(resp.headers, time.time())
                data = redact_bytes(b"".join(chunks), secrets)
                del chunks
                exchange, parsed = read_answer(data, stream and "event-stream" in resp.headers.get("content-type",
                                                                                                   "event-stream"))
        finally:
            resp.close()
    except (Transient, EndpointRefused, NotRetryable):
        if attempt.expired:  # whatever the cut-off answer looked like, it was cut off by its deadline
            raise Transient("timeout") from None
        raise
    except TooLarge:
        raise Transient("too_large") from None
    except (requests.exceptions.RequestException, urllib3.exceptions.HTTPError, http.client.HTTPException,
            OSError, ValueError) as err:
        if attempt.expired:
            raise Transient("timeout") from None
        raise Transient(transport_error_class(err)) from None
    finally:
        _ATTEMPT.current = None
    if attempt.expired:  # it expired just as the answer completed: the answer is late
        raise Transient("timeout")
    return exchange, parsed, kept, ttfb, last_byte, budget


def transport_error_class(err: Exception) -> str:
    """The error class of a failed attempt, from whatever requests, urllib3 or the socket raised:
    the setup faults (`connection_refused`, `dns_error`, `tls_error`, `connect_timeout`) apart
    from what a working endpoint does now and then (`timeout`, `connection_error`, `body_cut`)."""
    import ssl
    import requests
    import urllib3
    chain, todo = [], [err]
    while todo:  # every exception behind this one: causes, contexts, urllib3's `reason`
        cause = todo.pop()
        if cause is None or any(cause is seen for seen in chain):
            continue
        chain.append(cause)
        todo += [cause.__cause__, cause.__context__, getattr(cause, "reason", None)]
        todo += [a for a in getattr(cause, "args", ()) if isinstance(a, BaseException)]
    for error_class, kinds in (
            ("connection_refused", (ConnectionRefusedError,)),
            ("dns_error", (socket.gaierror, urllib3.exceptions.NameResolutionError)),
            ("tls_error", (ssl.SSLError, requests.exceptions.SSLError, urllib3.exceptions.SSLError)),
            ("connect_timeout", (requests.exceptions.ConnectTimeout, socket.timeout))):
        if any(isinstance(cause, kinds) for cause in chain):
            return error_class
    if any(type(cause) is urllib3.exceptions.ConnectTimeoutError for cause in chain):  # not its subclass
        return "connect_timeout"                                                   # NewConnectionError
    if isinstance(err, (requests.exceptions.Timeout, urllib3.exceptions.TimeoutError, TimeoutError)):
        return "timeout"
    if isinstance(err, requests.exceptions.ConnectionError) and not isinstance(
            err, (requests.exceptions.ChunkedEncodingError, requests.exceptions.ContentDecodingError)):
        return "connection_error"
    return "body_cut"


# A run whose first attempts all fail one of these ways stops (exit 2): {class: attempts that
# must agree}. 401 and a URL requests cannot send stop at once; one 403 may be moderation.
SETUP_FAULTS = {"setup": 1, "http_401": 1, "http_403": 3, "http_404": 3, "http_402": 3, "http_405": 3,
                "connection_refused": 3, "dns_error": 3, "tls_error": 3, "connect_timeout": 3}


def vendor_message(text: str) -> str:
    """The human message inside an error body (`{"error": {"message": ...}}`, `{"message": ...}`,
    `{"detail": ...}`, or plain text), on one line, at most 200 characters."""
    try:
        body = json.loads(text)  # at most 8 KiB, but it may still be nested too deep
    except (ValueError, RecursionError):
        body = None
    if isinstance(body, dict):
        inner = body.get("error")
        for found in (inner.get("message") if isinstance(inner, dict) else inner, body.get("message"),
                      body.get("detail")):
            if isinstance(found, str) and found.strip():
                text = found
                break
    return " ".join(str(text).split())[:200]


class Pace:
    """How many requests may be in flight: `--concurrency` is the ceiling, the vendor sets the pace.

    AIMD, as TCP finds a link's rate. It starts at 4 and, until the vendor first says "too many"
    (429/503/529), grows by one per answer (doubling every round trip). A "too many" shrinks the
    limit to 3/4, once per episode (the requests already in flight were sent at the old limit and
    are not counted again), and remembers where it happened: the limit climbs back quickly to just
    under that edge, then probes past it by one every four round trips, so a vendor with 16 slots
    is held at about 16, not sawing between 8 and 16. `x-ratelimit-remaining-*: 0` (a spent
    budget) shrinks it too and holds every request until `x-ratelimit-reset-*` says the budget is
    back. Time goes in through `now`, so the rules are tested without a clock."""

    def __init__(self, ceiling: int, start: int = 4):
        self.ceiling = ceiling
        self.limit = float(min(ceiling, start))
        self.in_flight = 0
        self.edge: float | None = None   # the limit at the last "too many"
        self.episode = 0                 # bumped at every decrease
        self.paused_until = 0.0
        self.rate_limited = 0
        self._cond = threading.Condition()

    def acquire(self, stop: threading.Event) -> int | None:
        """Wait for a free slot (and the end of any pause); the episode the request is sent in, or
        None when `stop` was set meanwhile."""
        with self._cond:
            while True:
                if stop.is_set():
                    return None
                wait = self.paused_until - time.monotonic()
                if wait <= 0 and self.in_flight < int(self.limit):
                    self.in_flight += 1
                    return self.episode
                self._cond.wait(min(max(wait, 0.01), 0.2) if wait > 0 else 0.2)

    def release(self, episode: int, outcome: str, wait: float | None = None, now: float | None = None) -> None:
        """After an attempt: `outcome` is "ok" (an answer), "limited" (429/503/529: `wait` seconds
        from Retry-After or the rate-limit headers), "spent" (an answer that says the budget is
        spent for `wait` seconds) or "other" (anything else: no signal)."""
        with self._cond:
            self.in_flight -= 1
            if outcome == "ok":
                self._grow()
            elif outcome in ("limited", "spent"):
                self.rate_limited += outcome == "limited"
                if episode == self.episode:  # the first "too many" of this episode
                    self.edge = self.limit
                    self.limit = max(1.0, self.limit * 0.75)
                    self.episode += 1
                if wait:
                    now = time.monotonic() if now is None else now
                    self.paused_until = max(self.paused_until, now + min(wait, 60.0))
            self._cond.notify_all()

    def _grow(self) -> None:
        if self.edge is None:
            step = 1.0                              # slow start: +1 an answer
        elif self.limit + 1 < self.edge:
            step = 1.0                              # back toward the known edge quickly
        else:
            step = 1.0 / (4 * self.limit)           # probe past it: +1 every 4 round trips
        self.limit = min(float(self.ceiling), self.limit + step)


def ratelimit_wait(headers, now: float) -> float | None:
    """Seconds until a spent rate-limit budget is back, from OpenAI-style headers
    (`x-ratelimit-remaining-requests: 0` with `x-ratelimit-reset-requests: 6m0s`, same for
    `-tokens`); None when no budget is spent. A reset that cannot be read counts as 1 s."""
    waits = []
    for kind in ("requests", "tokens"):
        remaining = headers.get(f"x-ratelimit-remaining-{kind}")
        if remaining is not None and remaining.strip() in ("0", "0.0"):
            waits.append(_duration(headers.get(f"x-ratelimit-reset-{kind}"), now))
    return max(waits) if waits else None


def _duration(text: str | None, now: float) -> float:
    """`6m0s`, `1.5s`, `250ms`, `20` (seconds) or an HTTP date -> seconds from now."""
    if not text:
        return 1.0
    text = text.strip()
    parts = re.findall(r"(\d+(?:\.\d+)?)(ms|h|m|s)", text)
    if parts and "".join(n + u for n, u in parts) == text.replace(" ", ""):
        scale = {"ms": 0.001, "s": 1, "m": 60, "h": 3600}
        return sum(float(n) * scale[u] for n, u in parts)
    found = parse_retry_after(text, now)
    return 1.0 if found is None else found


# ---- many requests: a pool of workers, retries, the first attempts' setup faults ------------------

REQUEST_TIME_CAP = 900.0  # seconds one request may take over all its attempts (a persistent 429 ends)
PROGRESS_WINDOW = 120.0  # a run answered within this many seconds is "making progress" (429s cost no retry)


@dataclass
class RunState:
    """Counters the progress line is rendered from (mutated under the sender's lock)."""
    total: int
    cached: int = 0
    done: int = 0
    failed: int = 0
    retries: int = 0
    sent: int = 0
    started: float = 0.0
    in_flight_limit: int = 0  # the Pace's limit now
    rate_limited: int = 0     # the vendor's "too many"s so far


class Fetched(NamedTuple):
    """What came of one request: a final exchange and its parsed answer, or the last error after
    the caps; `limited`: how many of its attempts the vendor answered "too many"."""
    exchange: dict | None
    parsed: object
    error: str | None
    attempts: int
    detail: str | None = None
    limited: int = 0


class Sender:
    """Sends requests through a thread pool (one requests.Session per thread): each attempt waits
    for a slot of the Pace, what is worth retrying is retried within the caps, and the first
    attempts that all fail one setup way stop everything. A subclass says what an answer is
    (`read_answer`) and what to do with it (`finish`); the sender prints nothing: `progress(state,
    final)` is called as items finish, `notify(text)` with what the user must hear."""

    def __init__(self, url: str, headers: dict, secrets: tuple, *, concurrency: int, timeout: float,
                 retries: int, read_answer: Callable[[bytes, bool], tuple],
                 progress: Callable[[RunState, bool], None] | None = None,
                 notify: Callable[[str], None] | None = None, seed: int | None = None,
                 max_answer_bytes: int = MAX_ANSWER_BYTES):
        self.url, self.headers, self.secrets, self.read_answer = url, headers, secrets, read_answer
        self.client: dict | None = None  # client_settings, read by the first worker (no request, no import)
        self.concurrency, self.timeout, self.retries = concurrency, timeout, retries
        self.progress = progress or (lambda state, final: None)
        self.notify = notify or (lambda text: None)
        self.deadlines, self.max_answer_bytes = Deadlines(), max_answer_bytes
        self.pace = Pace(concurrency)
        self.last_answer = time.monotonic()  # the run starts "in progress": early 429s cost no retry
        self.rng = random.Random(seed)
        self.stop = threading.Event()
        self.fatal: tuple[str, str] | None = None  # (error class, vendor's message): a setup fault
        self.crash: BaseException | None = None
        self.in_flight = 0
        self.any_success = False
        self.early: Counter = Counter()  # error classes of the attempts that failed before any success
        self.early_text: dict = {}
        self._local = threading.local()
        self._lock = threading.Lock()
        self.state = RunState(0)

    def finish(self, item, fetched: Fetched) -> bool:
        """Handle what came of `item` (in its worker); True when it counts as failed in progress."""
        raise NotImplementedError

    def _session(self):
        session = getattr(self._local, "session", None)
        if session is None:
            import requests
            with self._lock:
                self.client = self.client or client_settings(self.url)
            session = self._local.session = requests.Session()
            adapter = bounded_adapter()
            session.mount("http://", adapter)
            session.mount("https://", adapter)
            session.trust_env = False  # read once, in client_settings
            session.proxies.update(self.client["proxies"])
            session.verify = self.client["verify"]
        return session

    def fetch(self, payload: bytes, stream: bool) -> Fetched:
        """One request, over as many attempts as it takes and the caps allow. Each attempt waits
        for a slot of the Pace. `--retries` counts failed attempts, except a 429 while the run as a
        whole is answered (an answer in the last PROGRESS_WINDOW seconds): that costs time, never
        the request."""
        started = time.monotonic()
        error, attempt, counted, limited = None, 0, 0, 0
        while True:
            episode = self.pace.acquire(self.stop)
            if episode is None:
                return Fetched(None, None, error or "interrupted", attempt)
            attempt += 1
            with self._lock:
                self.state.sent += 1
            try:
                exchange, parsed, budget = send_once(self._session(), self.url, payload, self.headers, stream,
                                                     self.timeout, self.secrets, self.deadlines, self.read_answer,
                                                     self.max_answer_bytes)
            except EndpointRefused as err:
                self.pace.release(episode, "other")
                self._failed_before_success(err.error_class, err.text)
                return Fetched(None, None, err.error_class, attempt)
            except NotRetryable as err:
                self.pace.release(episode, "other")
                self._failed_before_success(err.error_class, err.text)
                return Fetched(None, None, err.error_class, attempt, err.text)
            except Transient as err:
                self.pace.release(episode, "limited" if err.limited else "other", err.budget)
                error = err.error_class
                limited += err.limited
                self._failed_before_success(error, "")
                progressing = time.monotonic() - self.last_answer < PROGRESS_WINDOW
                counted += not (err.status == 429 and progressing)
                if counted > self.retries or time.monotonic() - started > max(REQUEST_TIME_CAP, 2 * self.timeout):
                    return Fetched(None, None, error, attempt, None, limited)
                with self._lock:
                    self.state.retries += 1
                self.stop.wait(backoff_delay(min(attempt, 8), err.retry_after, self.rng))
                continue
            self.pace.release(episode, "spent" if budget else "ok", budget)
            self.last_answer = time.monotonic()
            self.any_success = True  # any answer, a rejection included: the endpoint works
            return Fetched(exchange, parsed, None, attempt, None, limited)

    def _failed_before_success(self, error_class: str, text: str) -> None:
        """Stop the run when its first attempts all fail the same setup way (SETUP_FAULTS: a refused
        key, a wrong URL, nothing listening, an unknown host, TLS, a model not served): the other
        requests would fail alike. Within about `concurrency` x 3 attempts, whatever the test set's size."""
        with self._lock:
            if self.any_success:
                return
            self.early[error_class] += 1
            self.early_text.setdefault(error_class, text)
            needed = SETUP_FAULTS.get(error_class)
            if needed and len(self.early) == 1 and self.early[error_class] >= needed and self.fatal is None:
                self.fatal = (error_class, self.early_text[error_class])
                self.stop.set()

    def work(self, item) -> None:
        with self._lock:
            self.in_flight += 1
        try:
            fetched = self.fetch(item.payload, bool(item.body.get("stream")))
        finally:
            with self._lock:
                self.in_flight -= 1
        if fetched.error == "interrupted":
            return
        failed = self.finish(item, fetched)
        with self._lock:
            self.state.done += 1
            self.state.failed += failed
            self.state.in_flight_limit, self.state.rate_limited = int(self.pace.limit), self.pace.rate_limited
        self.progress(self.state, False)

    def _worker(self, todo) -> None:
        while True:
            item = todo.get()
            if item is None:
                return
            if self.stop.is_set():
                continue
            try:
                self.work(item)
            except BaseException as err:  # noqa: BLE001 - a worker that raised (a bug) stops the run loudly
                self._crashed(err)

    def _crashed(self, err: BaseException) -> None:
        self.crash = self.crash or err
        self.stop.set()

    def skipped(self, cached: bool, count: int = 1) -> None:
        """`count` of the `total` items need no request: their answers are cached, or an identical
        body is being sent already (that one is not counted twice)."""
        if count:
            with self._lock:
                if cached:
                    self.state.cached += count
                    self.state.done += count
                else:
                    self.state.total -= count
            self.progress(self.state, False)

    def run(self, items: Iterable, total: int) -> RunState:
        """Send `items` (produced as they are needed; `skipped` counts the rest of `total`) with
        `concurrency` daemon workers fed through a bounded queue, so memory stays flat. Ctrl-C stops
        submitting and waits for the requests in flight; a second Ctrl-C abandons them (daemon
        threads end with the process)."""
        import queue
        self.state = RunState(total=total, started=time.monotonic())
        todo = queue.Queue(maxsize=self.concurrency * 2)
        workers = [threading.Thread(target=self._worker, args=(todo,), daemon=True, name=f"k2vv-{i}")
                   for i in range(self.concurrency)]
        for worker in workers:
            worker.start()

        def put(item) -> bool:
            while not self.stop.is_set() or item is None:
                try:
                    todo.put(item, timeout=0.2)
                    return True
                except queue.Full:
                    continue
            return False

        def wait() -> None:
            for worker in workers:
                while worker.is_alive():
                    worker.join(0.2)
        try:
            for item in items:
                if not put(item):
                    break
            for _ in workers:
                put(None)
            wait()
        except BaseException as err:  # Ctrl-C, or the items could not be read: stop cleanly either way
            self.stop.set()
            if isinstance(err, KeyboardInterrupt):
                self.notify(f"stopping: waiting for {self.in_flight} requests in flight "
                            "(Ctrl-C again to abandon them)")
            try:
                while True:  # drop what was queued, then let every worker see the end
                    todo.get_nowait()
            except queue.Empty:
                pass
            try:
                for _ in workers:
                    put(None)
                wait()
            except KeyboardInterrupt:
                pass
            raise
        finally:
            self.progress(self.state, True)
        return self.state
