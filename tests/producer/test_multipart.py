"""framecast's own HTTP MJPEG reader against real loopback cameras that each do one thing their own
way: boundaries with or without dashes or undeclared, a multipart body under another Content-Type,
chunked transfer, parts without Content-Length, credentials (Basic and Digest), oversized parts of
either kind between normal ones, a header line without end, and a body that is not multipart at all
(which goes to FFmpeg as before)."""

from __future__ import annotations

import base64
import hashlib
import time
from http.server import BaseHTTPRequestHandler

import numpy as np
import pytest

from common import jpeg
from common.errors import SourceError
from producer import multipart
from producer.multipart import OversizedPart
from producer.sources import SourceJpeg, UrlSource
from tests.loopback_http import LoopbackServer

JPEGS = [jpeg.encode(np.random.default_rng(i).integers(0, 255, (48, 64, 3), dtype=np.uint8), 75) for i in range(3)]


def camera(body, content_type="multipart/x-mixed-replace; boundary=frame", chunked=False, auth=None):
    """A loopback camera writing `body(write)`; `auth(handler)` may answer 401 by returning False."""

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1" if chunked else "HTTP/1.0"

        def do_GET(self):
            if auth is not None and not auth(self):
                return
            self.send_response(200)
            self.send_header("Content-Type", content_type)
            if chunked:
                self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()

            def write(data: bytes):
                if chunked:
                    self.wfile.write(b"%x\r\n" % len(data) + data + b"\r\n")
                else:
                    self.wfile.write(data)

            try:
                body(write)
                time.sleep(5)  # the camera stays connected; the client decides when to leave
            except OSError:
                pass

        def log_message(self, *args):
            pass

    return LoopbackServer(Handler)


def part(data: bytes, boundary=b"--frame", length=True, sep=b"\r\n") -> bytes:
    """One multipart part; without a length it ends only at the next boundary line (as in FFmpeg)."""
    head = boundary + sep + b"Content-Type: image/jpeg" + sep
    if length:
        head += b"Content-Length: %d" % len(data) + sep
    return head + sep + data + sep


def read_parts(server, n, path="/video.mjpg", userinfo=""):
    url = server.url(path).replace("http://", f"http://{userinfo}")
    source = UrlSource(url, passthrough=True)
    source.open()
    try:
        assert source.raw_jpeg and source._mjpeg is not None  # framecast's reader, not FFmpeg
        got = []
        for _ in range(n):
            try:
                got.append(source.read())
            except OversizedPart as exc:
                got.append(exc)
        return got
    finally:
        source.close()
        server.close()


@pytest.mark.parametrize("declared, written, length, sep", [
    ("frame", b"--frame", True, b"\r\n"),
    ("--frame", b"--frame", True, b"\r\n"),  # the declared boundary already carries the dashes
    ('"frame"', b"----frame", False, b"\n"),  # quoted, extra dashes, bare LF, no Content-Length
])
def test_boundary_spellings(declared, written, length, sep):
    body = b"".join(part(j, written, length, sep) for j in JPEGS) + written + sep  # ends the last part
    server = camera(lambda w: w(b"preamble junk\r\n" + body),
                    content_type=f"multipart/x-mixed-replace; boundary={declared}")
    assert [g.data for g in read_parts(server, 3)] == JPEGS


def test_undeclared_boundary_and_wrong_content_type_are_still_read_here():
    body = b"".join(part(j, b"--xyz", length=False) for j in JPEGS) + b"--xyz\r\n"
    server = camera(lambda w: w(body), content_type="text/plain")  # FFmpeg would probe this as mpjpeg
    assert [g.data for g in read_parts(server, 3)] == JPEGS


def test_chunked_transfer_split_anywhere():
    body = b"".join(part(j, length=False) for j in JPEGS) + b"--frame\r\n"

    def send(write):
        for i in range(0, len(body), 7):  # chunks that cut boundaries and headers in half
            write(body[i:i + 7])

    assert [g.data for g in read_parts(camera(send, chunked=True), 3)] == JPEGS


@pytest.mark.parametrize("with_length", [True, False])
def test_oversized_parts_are_refused_once_and_the_stream_resyncs(monkeypatch, with_length):
    monkeypatch.setattr(multipart, "MAX_PART_BYTES", 64 * 1024)  # the reader's limit, scaled down
    big = b"\xff\xd8" + b"\x00\n--fram" * 30_000  # 240 kB, with near-boundaries inside
    body = part(JPEGS[0]) + part(big, length=with_length) + part(JPEGS[1]) + part(big, length=with_length) \
        + part(JPEGS[2]) + b"--frame\r\n"
    got = read_parts(camera(lambda w: w(body)), 5)
    assert [g.data if isinstance(g, SourceJpeg) else "oversized" for g in got] == \
        [JPEGS[0], "oversized", JPEGS[1], "oversized", JPEGS[2]]


def test_a_header_line_without_end_is_a_source_error():
    server = camera(lambda w: w(b"--frame\r\nX-Junk: " + b"a" * (multipart.MAX_LINE_BYTES * 4)))
    source = UrlSource(server.url(), passthrough=True)
    source.open()
    try:
        with pytest.raises(SourceError, match="header line over"):
            source.read()
    finally:
        source.close()
        server.close()


def test_basic_credentials_are_sent_and_never_in_errors():
    seen = []

    def auth(handler):
        seen.append(handler.headers.get("Authorization"))
        if handler.headers.get("Authorization") == "Basic " + base64.b64encode(b"admin:s3cr et").decode():
            return True
        handler.send_response(401)
        handler.send_header("WWW-Authenticate", 'Basic realm="cam"')
        handler.end_headers()
        return False

    body = b"".join(part(j) for j in JPEGS)
    assert [g.data for g in read_parts(camera(lambda w: w(body), auth=auth), 3, userinfo="admin:s3cr%20et@")] == JPEGS
    wrong = camera(lambda w: w(body), auth=auth)
    source = UrlSource(wrong.url().replace("http://", "http://admin:hunter2@"), passthrough=True)
    try:
        with pytest.raises(SourceError) as err:
            source.open()
    finally:
        wrong.close()
    assert "401" in str(err.value) and "hunter2" not in str(err.value) and "admin" not in str(err.value)


def test_a_relative_redirect_is_followed_with_the_credentials():
    def auth(handler):
        if handler.path == "/old":
            handler.send_response(302)
            handler.send_header("Location", "/video.mjpg")
            handler.end_headers()
            return False
        return handler.headers.get("Authorization") == "Basic " + base64.b64encode(b"u:p").decode()

    body = b"".join(part(j) for j in JPEGS)
    assert [g.data for g in read_parts(camera(lambda w: w(body), auth=auth), 3, "/old", "u:p@")] == JPEGS


def test_digest_credentials_answer_the_challenge():
    realm, nonce = "cam", "abc123"

    def auth(handler):
        header = handler.headers.get("Authorization") or ""
        if header.startswith("Digest "):
            fields = dict(item.strip().split("=", 1) for item in header[7:].split(","))
            fields = {k: v.strip('"') for k, v in fields.items()}
            ha1 = hashlib.md5(f"admin:{realm}:pw".encode()).hexdigest()
            ha2 = hashlib.md5(f"GET:{fields['uri']}".encode()).hexdigest()
            expect = hashlib.md5(f"{ha1}:{nonce}:{fields['nc']}:{fields['cnonce']}:auth:{ha2}".encode()).hexdigest()
            if fields["response"] == expect:
                return True
        handler.send_response(401)
        handler.send_header("WWW-Authenticate", f'Digest realm="{realm}", nonce="{nonce}", qop="auth"')
        handler.end_headers()
        return False

    body = b"".join(part(j) for j in JPEGS)
    assert [g.data for g in read_parts(camera(lambda w: w(body), auth=auth), 3, userinfo="admin:pw@")] == JPEGS


def test_a_body_that_is_not_multipart_goes_to_ffmpeg(short_clip):
    clip = short_clip.read_bytes()

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self):
            self.send_response(200)
            self.send_header("Content-Type", "video/x-msvideo")
            self.send_header("Content-Length", str(len(clip)))
            self.end_headers()
            try:
                self.wfile.write(clip)
            except OSError:
                pass

        def log_message(self, *args):
            pass

    server = LoopbackServer(Handler)
    source = UrlSource(server.url("/clip.avi"), passthrough=True)
    try:
        source.open()
        assert source._mjpeg is None and source._cap is not None  # OpenCV's FFmpeg backend
        assert isinstance(source.read(), SourceJpeg)  # an MJPEG AVI: its packets, as before
    finally:
        source.close()
        server.close()


def test_passthrough_off_decodes_the_camera_frames():
    body = b"".join(part(j) for j in JPEGS)
    server = camera(lambda w: w(body))
    source = UrlSource(server.url(), passthrough=False)
    source.open()
    try:
        frames = [source.read() for _ in range(3)]
    finally:
        source.close()
        server.close()
    assert all(isinstance(f, np.ndarray) and f.shape == (48, 64, 3) for f in frames)
    assert all(np.array_equal(f, jpeg.decode(j)) for f, j in zip(frames, JPEGS, strict=True))
