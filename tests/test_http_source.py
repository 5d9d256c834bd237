"""Remote reading against a scripted loopback HTTP server (http.server in a thread): 503s with
Retry-After, connections dropped half-way, servers that ignore ranges, objects that change between
requests and malformed answers; then the same faults under load_atari on a recorded fixture."""

import errno
import random
import socket
import threading
import time
import urllib.error
from email.utils import formatdate
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import numpy as np
import pytest
from scripts import one_line_error, run_script

from common.atari import cache, games, loader
from common.atari.fixture import write_fixture
from common.atari.http_source import (
    DEFAULT_RETRY,
    RetryPolicy,
    backoff_delay,
    object_version,
    retry_after_seconds,
    stream_blocks,
    unreachable,
)
from common.errors import DataError

FAST = RetryPolicy(attempts=5, base_delay_s=0.001, max_delay_s=0.01, deadline_s=30.0, timeout_s=10.0)
BODY = bytes(random.Random(0).getrandbits(8) for _ in range(50_000))


class Scripted:
    """The objects a server holds and what it does to each GET, in order (then "ok").

    Faults: "503" (Retry-After: retry_after; likewise "408", "429" and "403"), "drop" (headers, then half the body, then the
    connection closes), "change" (the object is replaced, then served), "bad-length"
    (Content-Length: 12abc), "two-lengths", "bad-range" (206 with a wrong Content-Range).
    """

    def __init__(self, objects, faults=(), etag=True, ranges=True, if_match=True, retry_after="0"):
        self.objects = dict(objects)
        self.faults = list(faults)
        self.etag, self.ranges, self.if_match, self.retry_after = etag, ranges, if_match, retry_after
        self.version = 0
        self.requests = []  # (method, path, Range, If-Match)
        self.lock = threading.Lock()

    def changed(self, path):
        self.objects[path] = bytes(b ^ 0x55 for b in self.objects[path][:100]) + self.objects[path][100:]
        self.version += 1


def make_handler(script: Scripted):
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args):
            pass

        def send_object_headers(self, status, length, body_length, extra=()):
            self.send_response(status)
            self.send_header("Content-Length", str(length))
            if script.etag:
                self.send_header("ETag", f'"v{script.version}"')
            self.send_header("Last-Modified", formatdate(1_700_000_000, usegmt=True))  # never changes
            for name, value in extra:
                self.send_header(name, value)
            self.end_headers()

        def do_HEAD(self):
            with script.lock:
                script.requests.append(("HEAD", self.path, None, None))
                body = script.objects.get(self.path)
            if body is None:
                self.send_error(404)
                return
            self.send_object_headers(200, len(body), len(body))

        def do_GET(self):
            with script.lock:
                script.requests.append(("GET", self.path, self.headers.get("Range"), self.headers.get("If-Match")))
                fault = script.faults.pop(0) if script.faults else "ok"
                if fault == "change":
                    script.changed(self.path)
                body = script.objects.get(self.path)
            if body is None:
                self.send_error(404)
                return
            if fault in ("503", "408", "429", "403"):
                self.send_response(int(fault))
                self.send_header("Retry-After", script.retry_after)
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            if fault in ("bad-length", "two-lengths"):
                self.send_response(200)
                self.send_header("Content-Length", "12abc" if fault == "bad-length" else str(len(body)))
                if fault == "two-lengths":
                    self.send_header("Content-Length", str(len(body) - 1))
                self.end_headers()
                self.wfile.write(body)
                return
            match = self.headers.get("If-Match")
            if script.if_match and script.etag and match and match != f'"v{script.version}"':
                self.send_error(412)
                return
            start = 0
            wanted = self.headers.get("Range")
            if wanted and script.ranges:
                start = int(wanted.split("=")[1].rstrip("-"))
                content_range = f"bytes {start}-{len(body) - 1}/{len(body)}"
                if fault == "bad-range":
                    content_range = f"bytes {start + 1}-{len(body) - 1}/{len(body)}"
                self.send_object_headers(206, len(body) - start, len(body), [("Content-Range", content_range)])
            else:
                self.send_object_headers(200, len(body), len(body))
            payload = body[start:]
            try:
                if fault == "drop":
                    self.wfile.write(payload[: len(payload) // 2])
                    self.wfile.flush()
                    self.connection.shutdown(socket.SHUT_RDWR)
                    self.close_connection = True
                    return
                self.wfile.write(payload)
            except (BrokenPipeError, ConnectionResetError):
                pass  # the reader closed the stream once it had what it needed

    return Handler


@pytest.fixture
def serve():
    """serve(script) -> base URL of a loopback server following `script`; shut down after the test."""
    servers = []

    def start(script: Scripted) -> str:
        server = ThreadingHTTPServer(("127.0.0.1", 0), make_handler(script))
        threading.Thread(target=server.serve_forever, daemon=True).start()
        servers.append(server)
        return f"http://127.0.0.1:{server.server_address[1]}"

    yield start
    for server in servers:
        server.shutdown()
        server.server_close()


def read_all(url, block_size=4096, policy=FAST):
    version, blocks = stream_blocks(url, block_size, policy)
    return version, b"".join(blocks)


def one_line(excinfo) -> str:
    message = str(excinfo.value)
    assert "\n" not in message and "Traceback" not in message
    return message


def test_backoff_grows_exponentially_with_jitter_and_is_capped():
    policy = RetryPolicy(base_delay_s=1.0, max_delay_s=10.0)
    rng = random.Random(0)
    for failures, nominal in [(1, 1.0), (2, 2.0), (3, 4.0), (4, 8.0), (5, 10.0), (9, 10.0)]:
        delays = [backoff_delay(failures, policy, rng) for _ in range(200)]
        assert 0.5 * nominal <= min(delays) and max(delays) < 1.5 * nominal
        assert max(delays) - min(delays) > 0.5 * nominal  # jittered, not a fixed wait
    assert retry_after_seconds("7") == 7.0
    assert retry_after_seconds(formatdate(1000.0 + 30, usegmt=True), now=1000.0) == pytest.approx(30.0)
    assert retry_after_seconds(None) is None and retry_after_seconds("soon") is None


def test_a_503_with_retry_after_then_a_dropped_connection_recover(serve):
    script = Scripted({"/shard": BODY}, faults=["503", "drop"], retry_after="1")
    url = serve(script) + "/shard"
    start = time.monotonic()
    version, data = read_all(url)
    assert time.monotonic() - start >= 0.95  # waited the server's Retry-After, not the 1 ms base delay
    assert data == BODY and version.size == len(BODY) and version.etag == '"v0"'
    gets = [r for r in script.requests if r[0] == "GET"]
    assert gets[:2] == [("GET", "/shard", None, None)] * 2
    resumed_from = int(gets[2][2].split("=")[1].rstrip("-"))
    assert len(gets) == 3 and 0 < resumed_from < len(BODY) and gets[2][3] == '"v0"'  # pinned with If-Match


def test_a_server_that_ignores_ranges_resends_everything_and_the_seen_part_is_passed_over(serve):
    script = Scripted({"/shard": BODY}, faults=["drop", "drop"], etag=False, ranges=False)
    _, data = read_all(serve(script) + "/shard", block_size=1000)
    assert data == BODY and len(script.requests) == 3


@pytest.mark.parametrize(
    "server",
    [
        dict(etag=True, if_match=True),  # answers the pinned request with 412
        dict(etag=True, if_match=False),  # ignores If-Match: the new ETag gives it away
        dict(etag=False, ranges=False),  # no validators, no ranges: the resent prefix differs
    ],
)
def test_an_object_that_changes_after_a_drop_is_an_error_not_mixed_data(serve, server):
    script = Scripted({"/shard": BODY}, faults=["drop", "change"], **server)
    with pytest.raises(DataError) as excinfo:
        read_all(serve(script) + "/shard")
    assert "/shard changed while it was being read" in one_line(excinfo)


@pytest.mark.parametrize("fault", ["bad-length", "two-lengths"])
def test_a_malformed_content_length_is_a_one_line_error(serve, fault):
    with pytest.raises(DataError) as excinfo:
        read_all(serve(Scripted({"/shard": BODY}, faults=[fault])) + "/shard")
    assert "malformed response: Content-Length" in one_line(excinfo)


def test_a_wrong_content_range_is_a_one_line_error(serve):
    with pytest.raises(DataError) as excinfo:
        read_all(serve(Scripted({"/shard": BODY}, faults=["drop", "bad-range"])) + "/shard")
    assert "malformed response: Content-Range" in one_line(excinfo)


def test_retries_stop_after_the_policy_attempts_and_404_is_not_retried(serve):
    script = Scripted({"/shard": BODY}, faults=["503"] * 20)
    with pytest.raises(DataError) as excinfo:
        read_all(serve(script) + "/shard")
    assert "HTTP 503" in one_line(excinfo) and f"{FAST.attempts} tries" in str(excinfo.value)
    assert len(script.requests) == FAST.attempts
    missing = Scripted({})
    with pytest.raises(DataError) as excinfo:
        read_all(serve(missing) + "/nothing")
    assert "HTTP 404" in one_line(excinfo) and len(missing.requests) == 1
    assert object_version(serve(Scripted({"/shard": BODY})) + "/shard").size == len(BODY)


def test_errors_that_retrying_cannot_fix_are_told_from_transient_ones():
    assert "does not resolve (Name or service not known)" in unreachable(
        urllib.error.URLError(socket.gaierror(socket.EAI_NONAME, "Name or service not known"))
    )
    assert unreachable(urllib.error.URLError(socket.gaierror(socket.EAI_AGAIN, "Temporary failure"))) is None
    refused = ConnectionRefusedError(errno.ECONNREFUSED, "Connection refused")
    assert unreachable(urllib.error.URLError(refused)) == "the connection was refused"
    assert unreachable(OSError(errno.ENETUNREACH, "Network is unreachable")) == "the network is unreachable"
    for transient in (TimeoutError("timed out"), ConnectionResetError(errno.ECONNRESET, "reset"), socket.timeout()):
        assert unreachable(urllib.error.URLError(transient)) is None and unreachable(transient) is None


def free_port() -> int:
    """A loopback port nothing listens on (bound, then released)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def fails_fast(url: str, words: str):
    """Reading `url` with the default retry policy (1 s, 2 s, ... between tries) ends within 5 s in one line
    naming the URL, `words` and the --data-dir way out."""
    start = time.monotonic()
    with pytest.raises(DataError) as excinfo:
        read_all(url, policy=DEFAULT_RETRY)
    assert time.monotonic() - start < 5
    message = one_line(excinfo)
    assert url in message and words in message and "--data-dir" in message, message
    return message


def test_a_host_that_does_not_resolve_fails_at_once():
    try:
        socket.getaddrinfo("nonexistent.invalid", 80)
    except socket.gaierror as error:
        if error.errno == socket.EAI_AGAIN:
            pytest.skip("this machine's resolver gives no answer at all (a temporary failure, retried)")
    fails_fast("http://nonexistent.invalid/shard", "does not resolve")


def test_a_refused_connection_fails_at_once():
    fails_fast(f"http://127.0.0.1:{free_port()}/shard", "the connection was refused")


@pytest.mark.parametrize("fault,words", [("404", "HTTP 404"), ("403", "HTTP 403")])
def test_a_client_error_is_not_retried_and_names_the_local_way_out(serve, fault, words):
    script = Scripted({"/shard": BODY} if fault != "404" else {}, faults=[fault])
    fails_fast(serve(script) + "/shard", words)
    assert len(script.requests) == 1


@pytest.mark.parametrize("fault", ["408", "429", "503"])
def test_timeouts_and_rate_limits_are_retried(serve, fault):
    script = Scripted({"/shard": BODY}, faults=[fault, fault])
    assert read_all(serve(script) + "/shard")[1] == BODY
    assert len(script.requests) == 3


def test_a_script_given_an_address_that_cannot_work_stops_within_seconds_in_one_line(tmp_path):
    url = f"http://127.0.0.1:{free_port()}/rl_unplugged"
    start = time.monotonic()
    line = one_line_error(run_script(["--env-id", "Pong", "--data-dir", url], tmp_path, script="bc.py"))
    assert time.monotonic() - start < 60  # checked before any network is built or compiled (about 4 s)
    assert f"cannot reach {url}/Pong/run_1-00000-of-00050: the connection was refused" in line and "--data-dir" in line


def test_a_refusal_after_the_server_answered_is_a_restart_and_retried(serve, monkeypatch):
    from common.atari import http_source

    real, calls = http_source._open, []

    def open_refused_once_after_the_first(url, headers, method, timeout_s):
        calls.append(headers.get("Range"))
        if len(calls) == 2:  # reopening after the drop: the server is restarting
            raise urllib.error.URLError(ConnectionRefusedError(errno.ECONNREFUSED, "Connection refused"))
        return real(url, headers, method, timeout_s)

    monkeypatch.setattr(http_source, "_open", open_refused_once_after_the_first)
    assert read_all(serve(Scripted({"/shard": BODY}, faults=["drop"])) + "/shard")[1] == BODY
    assert len(calls) == 3 and calls[0] is None and calls[2].startswith("bytes=")


# ----------------------------------------------------------------------------------------------
# The same faults under load_atari, on real RL Unplugged records
# ----------------------------------------------------------------------------------------------

GAME = "Breakout"


@pytest.fixture(scope="module")
def fixture_shards(tmp_path_factory):
    out = tmp_path_factory.mktemp("http_shards")
    write_fixture(out, game=GAME, run=1, num_shards=2, episodes_per_shard=2, max_steps=80, seed=3)
    return {f"/{GAME}/{p.name}": p.read_bytes() for p in sorted((out / GAME).iterdir())}, out


def test_load_atari_over_a_flaky_server_matches_the_local_read_and_a_change_is_refused(serve, fixture_shards, tmp_path):
    objects, local = fixture_shards
    expected, _ = loader.load_atari(GAME, 1, local, 1.0, cache_dir=tmp_path / "local", progress=False)
    script = Scripted(objects, faults=["503", "drop", "drop"], retry_after="0")
    url = serve(script)
    loaded, _ = loader.load_atari(
        GAME, 1, url, 1.0, cache_dir=tmp_path / "remote", num_shards=2, workers=1, progress=False, retry=FAST
    )
    for name in expected._fields:
        np.testing.assert_array_equal(getattr(loaded, name), getattr(expected, name), err_msg=name)
    manifest = cache.read_cache_meta(games.cache_path(GAME, 1, 1.0, tmp_path / "remote"))
    assert [s["version"]["etag"] for s in manifest["shards"]] == ['"v0"', '"v0"']

    changing = Scripted(objects, faults=["drop", "change"])
    with pytest.raises(DataError) as excinfo:
        loader.load_atari(
            GAME, 1, serve(changing), 1.0, cache_dir=tmp_path / "other", num_shards=2, workers=1, progress=False, retry=FAST
        )
    assert "changed while it was being read" in one_line(excinfo)

    # The cached copy is used while the object stands (HEAD only), and rebuilt once it changes.
    count = len([r for r in script.requests if r[0] == "GET"])
    loader.load_atari(GAME, 1, url, 1.0, cache_dir=tmp_path / "remote", num_shards=2, progress=False, retry=FAST)
    assert len([r for r in script.requests if r[0] == "GET"]) == count
    script.changed(f"/{GAME}/run_1-00001-of-00002")
    with pytest.raises(DataError, match="is corrupt"):  # the changed bytes fail the record checksums
        loader.load_atari(GAME, 1, url, 1.0, cache_dir=tmp_path / "remote", num_shards=2, progress=False, retry=FAST)
