"""Reading one object over HTTP(S) as a stream of exact blocks, across a flaky server.

`stream_blocks(url, block_size)` opens the object with one GET and returns its `ObjectVersion`
(size from Content-Length; ETag, x-goog-generation and Last-Modified when the server sends them)
and an iterator of blocks of exactly `block_size` bytes (the last one shorter). What it survives,
and what it refuses:

- Transient failures: a connection error, a timeout, HTTP 408, 429 or any 5xx are retried with
  exponential backoff and jitter (try k waits base * 2**(k-1) * U(0.5, 1.5), at most max_delay_s;
  a Retry-After header, in seconds or as a date, is waited instead when it is longer), up to
  `RetryPolicy.attempts` tries of one request and within `RetryPolicy.deadline_s` of its first
  failure. Bytes received count as progress and start the count afresh.
- A connection that drops mid-stream is reopened from the current offset with a Range request;
  a 206 answer must carry `Content-Range: bytes OFFSET-(SIZE-1)/SIZE`; a 200 answer (a server
  that ignores ranges) resends the whole object, whose first OFFSET bytes are passed over after
  checking that their CRC32C equals that of the bytes already delivered.
- Failures that retrying cannot fix end at once (a one-line DataError naming the URL and the
  local way out, --data-dir): any HTTP 4xx but 408 and 429, and, before the server has answered
  this request once, a host name that does not resolve (Name or service not known; a temporary
  resolver failure is retried), a refused connection or an unreachable host or network. Once the
  server has answered, such an error while resuming is transient (a restart) and is retried.
- A changed object: every reopening asks for the pinned version (If-Match with a strong ETag,
  x-goog-if-generation-match for Cloud Storage) and compares the answer's ETag, generation,
  Last-Modified and size with the first answer's; a difference or a 412 is an error, never a
  mix of two versions.
- A malformed answer (no, several or non-numeric Content-Length, a wrong Content-Range, a 200
  of another length, an unexpected status) is an error.

Every error is a `DataError` with a one-line message naming the URL. `object_version(url)` asks
for the version only (HEAD), for checking that a cached copy is still current. This module knows
nothing of the data format; common/atari/shards.py splits the stream into records.
"""

from __future__ import annotations

import email.utils
import errno
import http.client
import random
import socket
import time
import urllib.error
import urllib.request
from typing import Callable, Iterator, NamedTuple

import google_crc32c

from common.errors import DataError

RETRY_STATUSES = frozenset({408, 429}) | frozenset(range(500, 600))


class RetryPolicy(NamedTuple):
    attempts: int = 6  # tries of one request, the first included (at least 5 retries' worth of waiting)
    base_delay_s: float = 1.0  # wait before the second try; doubles for each further try (with jitter)
    max_delay_s: float = 30.0  # longest wait between two tries (Retry-After may ask for more, within the deadline)
    deadline_s: float = 600.0  # a request's tries and waits end this long after its first failure
    timeout_s: float = 60.0  # socket timeout of one try


DEFAULT_RETRY = RetryPolicy()
# What a failure that retrying cannot fix suggests besides checking the address.
LOCAL_COPY = "or download the shards (gsutil -m cp) and pass their directory as --data-dir"
# Connection errors that say the address is wrong when the server has never answered (not a busy server).
UNREACHABLE = {
    errno.ECONNREFUSED: "the connection was refused",
    errno.EHOSTUNREACH: "the host is unreachable",
    errno.ENETUNREACH: "the network is unreachable",
}


class ObjectVersion(NamedTuple):
    """What identifies one version of a remote object (None: the server did not say)."""

    size: int
    etag: str | None
    generation: str | None
    last_modified: str | None

    def as_dict(self) -> dict:
        return {k: v for k, v in self._asdict().items() if v is not None}

    def differs_from(self, other: "ObjectVersion") -> str | None:
        """The first field both versions state and that differs, as 'name a -> b', else None."""
        for name in self._fields:
            a, b = getattr(self, name), getattr(other, name)
            if a is not None and b is not None and a != b:
                return f"{name} {a} -> {b}"
        return None


def backoff_delay(failures: int, policy: RetryPolicy, rng: random.Random) -> float:
    """Seconds to wait after the `failures`-th failure in a row: exponential, with jitter in [0.5, 1.5)."""
    return min(policy.max_delay_s, policy.base_delay_s * 2.0 ** (failures - 1)) * rng.uniform(0.5, 1.5)


def retry_after_seconds(value: str | None, now: float | None = None) -> float | None:
    """A Retry-After header (delta seconds or an HTTP date) in seconds from now; None if absent or unreadable."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when is None:
        return None
    return max(0.0, when.timestamp() - (time.time() if now is None else now))


def content_length(url: str, headers) -> int:
    """The one non-negative integer Content-Length of a response; DataError if absent or malformed."""
    values = headers.get_all("Content-Length") or []
    if not values:
        raise DataError(f"{url}: the server sent no Content-Length, which reading by blocks and resuming need")
    if len(set(v.strip() for v in values)) != 1 or not values[0].strip().isdigit():
        raise DataError(f"{url}: malformed response: Content-Length {', '.join(map(repr, values))} is not one byte count")
    return int(values[0].strip())


def _version(url: str, headers, size: int) -> ObjectVersion:
    return ObjectVersion(size, headers.get("ETag"), headers.get("x-goog-generation"), headers.get("Last-Modified"))


def _pin_headers(url: str, version: ObjectVersion | None) -> dict:
    """Conditional headers that make the server refuse (412) any other version than `version`."""
    headers = {}
    if version is None:
        return headers
    if version.etag and not version.etag.startswith("W/"):  # If-Match compares strong ETags only
        headers["If-Match"] = version.etag
    if version.generation and "storage.googleapis.com" in url:
        headers["x-goog-if-generation-match"] = version.generation
    return headers


def _changed(url: str, what: str) -> DataError:
    return DataError(f"{url} changed while it was being read ({what}); it is being replaced at the source: wait and run again")


def _status_error(url: str, code: int, reason: str) -> DataError:
    if code == 404:
        return DataError(
            f"no object at {url} (HTTP 404); check the data directory, the game, the run and the shard count, {LOCAL_COPY}"
        )
    if code in (401, 403):
        return DataError(f"{url}: HTTP {code} {reason}; check the data directory and that it is public, {LOCAL_COPY}")
    return DataError(f"{url}: HTTP {code} {reason}; check the data directory, {LOCAL_COPY}")


def unreachable(error: BaseException) -> str | None:
    """Why `error` (of opening a connection) says the address is wrong, in words; None for a transient failure.

    A host name the resolver does not know (socket.gaierror, but for EAI_AGAIN, "temporary failure"), a refused
    connection, an unreachable host or network."""
    reason = getattr(error, "reason", None) or error  # urllib wraps the socket's error in a URLError
    if isinstance(reason, socket.gaierror):
        if reason.errno == socket.EAI_AGAIN:
            return None
        return f"its host name does not resolve ({reason.strerror or reason})"
    if isinstance(reason, OSError) and reason.errno in UNREACHABLE:
        return UNREACHABLE[reason.errno]
    return None


class _Failures:
    """Consecutive failures of one request: waits between tries, gives up after the policy's limits."""

    def __init__(self, url: str, policy: RetryPolicy, cancelled: Callable[[], bool], sleep: Callable[[float], None]):
        self.url, self.policy, self.cancelled, self.sleep = url, policy, cancelled, sleep
        self.count, self.since, self.rng = 0, 0.0, random.Random()
        self.answered = False  # the server has answered one of these requests (a later refusal is a restart)

    def reset(self) -> None:
        self.count = 0

    def record(self, what: str, retry_after: float | None = None) -> None:
        """Wait before the next try, or raise DataError when the tries or the deadline are spent."""
        now = time.monotonic()
        if self.count == 0:
            self.since = now
        self.count += 1
        delay = backoff_delay(self.count, self.policy, self.rng)
        if retry_after is not None:
            delay = max(delay, retry_after)
        spent = now - self.since
        if self.count >= self.policy.attempts or spent + delay > self.policy.deadline_s:
            raise DataError(
                f"cannot read {self.url}: {what}, {self.count} tries in {spent:.0f} s; "
                f"check the network or the server, {LOCAL_COPY}"
            )
        end = now + delay
        while not self.cancelled() and time.monotonic() < end:
            self.sleep(min(0.1, max(0.0, end - time.monotonic())))


def _describe(error: BaseException) -> str:
    reason = getattr(error, "reason", None) or error
    return f"{type(error).__name__}: {reason}".replace("\n", " ")


def _open(url: str, headers: dict, method: str, timeout_s: float):
    request = urllib.request.Request(url, headers=headers, method=method)
    return urllib.request.urlopen(request, timeout=timeout_s)


def _try_open(url: str, headers: dict, method: str, failures: _Failures):
    """One response for a request, retrying transient failures; DataError for any other failure."""
    while True:
        try:
            response = _open(url, headers, method, failures.policy.timeout_s)
            failures.answered = True
            return response
        except urllib.error.HTTPError as error:
            failures.answered = True
            code, error_headers = error.code, error.headers
            error.close()
            if code == 412:
                raise _changed(url, "the pinned version is gone (HTTP 412)") from None
            if code not in RETRY_STATUSES:
                raise _status_error(url, code, str(error.reason)) from None
            failures.record(f"HTTP {code} {error.reason}", retry_after_seconds(error_headers.get("Retry-After")))
        except (urllib.error.URLError, http.client.HTTPException, OSError) as error:
            wrong = None if failures.answered else unreachable(error)
            if wrong:
                raise DataError(f"cannot reach {url}: {wrong}; check the address, {LOCAL_COPY}") from None
            failures.record(_describe(error))


def object_version(url: str, policy: RetryPolicy = DEFAULT_RETRY) -> ObjectVersion:
    """The current version of the object at `url` (a HEAD request, retried as a GET would be)."""
    failures = _Failures(url, policy, lambda: False, time.sleep)
    response = _try_open(url, {}, "HEAD", failures)
    try:
        return _version(url, response.headers, content_length(url, response.headers))
    finally:
        response.close()


def stream_blocks(
    url: str,
    block_size: int,
    policy: RetryPolicy = DEFAULT_RETRY,
    cancelled: Callable[[], bool] = lambda: False,
    sleep: Callable[[float], None] = time.sleep,
) -> tuple[ObjectVersion, Iterator[bytes]]:
    """The version of the object at `url` and an iterator of its bytes in exact `block_size` blocks.

    The first request is made (and retried) here; resumes happen inside the iterator. `cancelled`
    cuts a wait between tries short (the iterator then ends at its next block). Raises DataError.
    """
    failures = _Failures(url, policy, cancelled, sleep)
    response = _try_open(url, {}, "GET", failures)
    if response.status != 200:
        response.close()
        raise DataError(f"{url}: malformed response: HTTP {response.status} to a plain GET (expected 200)")
    try:
        size = content_length(url, response.headers)
    except DataError:
        response.close()
        raise
    version = _version(url, response.headers, size)
    failures.reset()

    def reopen(offset: int):
        """A response from `offset` on, and how many leading bytes of it to pass over (a 200 answer)."""
        while True:
            reply = _try_open(url, {"Range": f"bytes={offset}-", **_pin_headers(url, version)}, "GET", failures)
            length = content_length(url, reply.headers)
            changed = version.differs_from(_version(url, reply.headers, size))
            if changed:
                reply.close()
                raise _changed(url, changed)
            if reply.status == 206:
                expected = f"bytes {offset}-{size - 1}/{size}"
                got = (reply.headers.get("Content-Range") or "").strip()
                if got != expected or length != size - offset:
                    reply.close()
                    if got.rpartition("/")[2] not in ("", "*", str(size)):
                        raise _changed(url, f"Content-Range {got!r}, size {size} before")
                    raise DataError(
                        f"{url}: malformed response: Content-Range {got!r} with Content-Length {length} "
                        f"to a request from byte {offset} (expected {expected!r})"
                    )
                return reply, 0
            if reply.status == 200:
                if length != size:
                    reply.close()
                    raise _changed(url, f"size {size} -> {length}")
                return reply, offset
            reply.close()
            raise DataError(f"{url}: malformed response: HTTP {reply.status} to a range request")

    def blocks() -> Iterator[bytes]:
        nonlocal response
        offset, skip, pending = 0, 0, bytearray()
        delivered_crc, skipped_crc, skip_crc_target = 0, 0, 0
        try:
            while offset < size and not cancelled():
                if response is None:
                    response, skip = reopen(offset)
                    skipped_crc, skip_crc_target = 0, delivered_crc
                try:
                    chunk = response.read(min(block_size, size - offset + skip))
                    if not chunk:
                        raise ConnectionError("the connection closed early")
                except (http.client.HTTPException, OSError) as error:
                    response.close()
                    response = None
                    failures.record(f"the connection dropped at byte {offset} of {size} ({_describe(error)})")
                    continue
                if skip:
                    passed, chunk = chunk[:skip], chunk[skip:]
                    skip -= len(passed)
                    skipped_crc = google_crc32c.extend(skipped_crc, passed)
                    if skip == 0 and skipped_crc != skip_crc_target:
                        raise _changed(url, f"its first {offset} bytes differ when sent again")
                if not chunk:
                    continue
                failures.reset()
                delivered_crc = google_crc32c.extend(delivered_crc, chunk)
                offset += len(chunk)
                pending += chunk
                while len(pending) >= block_size:
                    yield bytes(pending[:block_size])
                    del pending[:block_size]
            if pending and not cancelled():
                yield bytes(pending)
        finally:
            if response is not None:
                response.close()

    return version, blocks()
