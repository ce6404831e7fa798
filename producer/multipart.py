"""Motion-JPEG over HTTP (`multipart/x-mixed-replace`), read by framecast itself, not by FFmpeg.

FFmpeg's mpjpeg demuxer buffers a whole part however large the camera makes it (a 200 MB part cost
the producer 600 MB), though no frame over the envelope limit can ever be published. Here a part is
held only up to `MAX_PART_BYTES`: a larger one is discarded while it is read (OversizedPart is raised
once per part, and the next read resyncs on the following boundary), so a camera costs at most that
much memory whatever it sends. Headers are bounded too; a connection that ends is a SourceError.

One MjpegStream is one HTTP connection, read by one capture thread; `close` may be called from
another thread and unblocks a read in progress.
"""

from __future__ import annotations

import base64
import http.client
import socket
import ssl
import urllib.parse
import urllib.request

from common.envelope import MAX_ENVELOPE_BYTES
from common.errors import FramecastError, SourceError

MAX_PART_BYTES = MAX_ENVELOPE_BYTES  # a larger JPEG can never be published
MAX_LINE_BYTES = 8192  # one header or boundary line
MAX_HEADERS = 64  # lines in one part's header block
MAX_REDIRECTS = 3
_READ_BYTES = 256 * 1024  # per recv: a 16 MiB part is ~64 of them
_SNIFF_BYTES = 64  # what tells an MJPEG body served under another Content-Type


class OversizedPart(FramecastError):
    """The camera sent a part larger than any frame that can be published; it was discarded."""


def open_mjpeg(url: str, timeout: float, name: str) -> MjpegStream | None:
    """Connect to an http(s) camera; its MjpegStream, or None when the body is not multipart (the
    caller hands the URL to FFmpeg). `name` is the redacted description used in errors.

    Credentials in the URL are sent as Basic auth, or as Digest when the camera asks for it; up to
    MAX_REDIRECTS redirects are followed (credentials only where the Location is relative). TLS certificates are
    not verified, as with FFmpeg's default (tls_verify=0) before: cameras mostly present self-signed
    ones."""
    for _ in range(MAX_REDIRECTS + 1):
        conn, sock, response = _connect(url, timeout, name)
        location = response.getheader("Location")
        if response.status not in (301, 302, 303, 307, 308) or not location:
            break
        response.close()
        conn.close()
        url = urllib.parse.urljoin(url, location)  # an absolute Location carries no credentials
        if not url.lower().startswith(("http://", "https://")):
            raise SourceError(f"{name} redirects to a URL that is not http(s)")
    else:
        raise SourceError(f"{name} redirects more than {MAX_REDIRECTS} times")
    if response.status != 200:
        response.close()
        conn.close()
        hint = ": add the user and password to the URL" if response.status == 401 else ""
        raise SourceError(f"cannot open {name}: HTTP {response.status} {response.reason}".rstrip() + hint)
    ctype = response.getheader("Content-Type") or ""
    boundary = _boundary_param(ctype)
    stream = MjpegStream(conn, sock, response, boundary, name)
    if ctype.lower().startswith("multipart/"):
        return stream
    try:  # a multipart body under a wrong Content-Type is what FFmpeg would buffer: keep it here
        looks_multipart = stream._peek(_SNIFF_BYTES).lstrip(b"\r\n\t ").startswith(b"--")
    except SourceError:
        looks_multipart = False
    if looks_multipart:
        return stream
    stream.close()
    return None


def _connect(url: str, timeout: float, name: str):
    """(connection, socket, response) of one GET, answering a Digest challenge once."""
    try:
        parts = urllib.parse.urlsplit(url)
        parts.port  # noqa: B018 - raises ValueError for a port that is not a number
        path = urllib.parse.urlunsplit(("", "", parts.path or "/", parts.query, "")) or "/"
        user = urllib.parse.unquote(parts.username) if parts.username else None
        password = urllib.parse.unquote(parts.password or "") if parts.username else None
        headers = {"User-Agent": "framecast", "Accept": "multipart/x-mixed-replace, image/jpeg, */*"}
        if user is not None:
            headers["Authorization"] = "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()
        conn, sock, response = _request(parts, path, headers, timeout)
        if response.status == 401 and user is not None:
            challenge = response.getheader("WWW-Authenticate") or ""
            response.close()
            conn.close()
            digest = _digest_authorization(url, challenge, user, password)
            if digest is None:
                raise SourceError(f"{name} refused the credentials (HTTP 401): check the user and password")
            conn, sock, response = _request(parts, path, {**headers, "Authorization": digest}, timeout)
    except (OSError, http.client.HTTPException) as exc:
        raise SourceError(f"cannot open {name}: {_reason(exc)}") from None
    except ValueError:  # its message may quote the URL: say what to fix instead
        raise SourceError(f"cannot open {name}: the URL's host or port is invalid") from None
    return conn, sock, response


def _request(parts: urllib.parse.SplitResult, path: str, headers: dict, timeout: float):
    host, port = parts.hostname or "", parts.port
    if parts.scheme.lower() == "https":
        context = ssl.create_default_context()
        context.check_hostname, context.verify_mode = False, ssl.CERT_NONE
        conn = http.client.HTTPSConnection(host, port, timeout=timeout, context=context)
    else:
        conn = http.client.HTTPConnection(host, port, timeout=timeout)
    try:
        conn.request("GET", path, headers=headers)
        sock = conn.sock  # before getresponse, which hands a closing connection's socket to the response
        return conn, sock, conn.getresponse()
    except BaseException:
        conn.close()
        raise


def _digest_authorization(url: str, challenge: str, user: str, password: str) -> str | None:
    """The Authorization header answering a Digest challenge (the standard library's own algorithm)."""
    scheme, _, params = challenge.partition(" ")
    if scheme.lower() != "digest":
        return None
    manager = urllib.request.HTTPPasswordMgrWithDefaultRealm()
    manager.add_password(None, url, user, password)
    handler = urllib.request.HTTPDigestAuthHandler(manager)
    chal = urllib.request.parse_keqv_list(filter(None, urllib.request.parse_http_list(params)))
    try:
        auth = handler.get_authorization(urllib.request.Request(url), chal)
    except (ValueError, KeyError):
        return None
    return f"Digest {auth}" if auth else None


def _boundary_param(content_type: str) -> bytes | None:
    for param in content_type.split(";")[1:]:
        key, _, value = param.strip().partition("=")
        if key.strip().lower() == "boundary" and value.strip().strip('"'):
            return value.strip().strip('"').encode("latin-1", "replace")
    return None


def _reason(exc: BaseException) -> str:
    """Why a connection failed, without the URL (socket errors never carry it)."""
    if isinstance(exc, TimeoutError | socket.timeout):
        return "timed out"
    text = getattr(exc, "strerror", None) or str(exc) or type(exc).__name__
    return text[:200]


class MjpegStream:
    """The parts of one multipart HTTP response, each returned as bytes by `read`."""

    def __init__(self, conn: http.client.HTTPConnection, sock: socket.socket, response: http.client.HTTPResponse,
                 boundary: bytes | None, name: str):
        self._conn, self._sock, self._response, self.name = conn, sock, response, name
        # Cameras disagree on whether the declared boundary includes the leading "--": compare
        # without dashes. No boundary declared: the first line starting with "--" names it.
        self._core = boundary.lstrip(b"-") if boundary else None
        self._buf = bytearray()
        self._skip = 0  # bytes of an oversized part still to discard before resyncing
        self._closed = False

    # ---- reading the connection (bounded) ---------------------------------------------------------
    def _fill(self) -> None:
        """Append what the camera sends next to the buffer; SourceError when it ends or stalls."""
        if self._closed:
            raise SourceError(f"{self.name} is not open")
        try:
            chunk = self._response.read1(_READ_BYTES)
        except (OSError, ValueError, AttributeError, http.client.HTTPException) as exc:
            raise SourceError(f"{self.name} failed: {_reason(exc)}") from None
        if not chunk:
            raise SourceError(f"{self.name} closed the connection")
        self._buf += chunk

    def _peek(self, n: int) -> bytes:
        while len(self._buf) < n:
            self._fill()
        return bytes(self._buf[:n])

    def _discard(self, n: int) -> int:
        """Drop up to n buffered-or-arriving bytes; what is left to drop (0 when done)."""
        while n > 0:
            if not self._buf:
                self._fill()
            take = min(n, len(self._buf))
            del self._buf[:take]
            n -= take
        return 0

    def _line(self) -> bytes:
        """The next line without its line break; a longer one than MAX_LINE_BYTES is a SourceError."""
        start = 0
        while (end := self._buf.find(b"\n", start)) < 0:
            if len(self._buf) > MAX_LINE_BYTES:
                raise SourceError(f"{self.name} sent a header line over {MAX_LINE_BYTES} bytes")
            start = len(self._buf)
            self._fill()
        if end > MAX_LINE_BYTES:
            raise SourceError(f"{self.name} sent a header line over {MAX_LINE_BYTES} bytes")
        line = bytes(self._buf[:end]).rstrip(b"\r")
        del self._buf[:end + 1]
        return line

    def _is_boundary(self, line: bytes) -> bool:
        if not line.startswith(b"--"):
            return False
        if self._core is None:
            self._core = line.rstrip(b" \t").lstrip(b"-").removesuffix(b"--")
            return bool(self._core)
        return line.lstrip(b"-").startswith(self._core)

    def _find_delimiter(self, start: int) -> int:
        """Index in the buffer where the next boundary line begins, searching from `start`; -1 if none yet."""
        token = b"--" + self._core
        while (hit := self._buf.find(token, start)) >= 0:
            begin = hit
            while begin > 0 and self._buf[begin - 1] == 0x2D:  # "-": extra dashes belong to the line
                begin -= 1
            if begin == 0 or self._buf[begin - 1] == 0x0A:
                return begin
            start = hit + 1
        return -1

    def _resync(self) -> None:
        """Discard everything up to the next boundary line (junk costs no more than the buffer)."""
        while True:
            if self._core is not None:
                at = self._find_delimiter(0)
                if at >= 0:
                    del self._buf[:at]
                    return
                keep = len(self._core) + MAX_LINE_BYTES
                if len(self._buf) > keep:
                    del self._buf[:len(self._buf) - keep]
            else:  # boundary unknown: the first line starting with "--" names it
                at = self._buf.find(b"--")
                if at >= 0 and (at == 0 or self._buf[at - 1] == 0x0A):
                    del self._buf[:at]
                    return
                if at >= 0:
                    del self._buf[:at + 1]
                    continue
                del self._buf[:max(0, len(self._buf) - 1)]
            self._fill()

    def _headers(self) -> dict[str, str]:
        headers: dict[str, str] = {}
        for _ in range(MAX_HEADERS):
            line = self._line()
            if not line:
                return headers
            key, _, value = line.decode("latin-1").partition(":")
            headers[key.strip().lower()] = value.strip()
        raise SourceError(f"{self.name} sent a part with over {MAX_HEADERS} header lines")

    # ---- parts ------------------------------------------------------------------------------------
    def read(self) -> bytes:
        """The next part's body. OversizedPart for one over MAX_PART_BYTES (then discarded on the next
        read); SourceError when the connection ends, stalls or breaks the multipart format."""
        if self._skip:
            self._skip = self._discard(self._skip)
        while True:
            self._resync()
            line = self._line()
            if not self._is_boundary(line):
                continue
            if line.rstrip(b" \t").endswith(self._core + b"--"):
                raise SourceError(f"{self.name} ended the stream")
            headers = self._headers()
            length = headers.get("content-length", "")
            if length.isdigit():
                return self._body_of_length(int(length))
            return self._body_to_delimiter()

    def _body_of_length(self, length: int) -> bytes:
        if length > MAX_PART_BYTES:
            self._skip = length
            raise OversizedPart(f"{self.name} sent a part of {length} bytes, over the {MAX_PART_BYTES}-byte "
                                "limit of a frame; discarded")
        while len(self._buf) < length:
            self._fill()
        return self._take(length)

    def _body_to_delimiter(self) -> bytes:
        searched = 0
        while (at := self._find_delimiter(searched)) < 0:
            if len(self._buf) > MAX_PART_BYTES:
                del self._buf[:len(self._buf) - len(self._core) - 2]  # the rest is dropped by _resync
                raise OversizedPart(f"{self.name} sent a part over the {MAX_PART_BYTES}-byte limit of a frame "
                                    "(no Content-Length); discarded")
            searched = max(0, len(self._buf) - len(self._core) - 2)
            self._fill()
        end = at
        if end and self._buf[end - 1] == 0x0A:  # the line break before the boundary is not the body's
            end -= 1
            if end and self._buf[end - 1] == 0x0D:
                end -= 1
        data = self._take(end)
        del self._buf[:at - end]
        return data

    def _take(self, n: int) -> bytes:
        """The buffer's first n bytes, removed from it, copied once (a slice of the bytearray would
        be a second copy of a part that may be 16 MiB)."""
        with memoryview(self._buf) as view:
            data = bytes(view[:n])
        del self._buf[:n]
        return data

    def close(self) -> None:
        """Close the connection; safe to call twice and from another thread than the reader's."""
        self._closed = True
        sock = self._sock
        if sock is not None:
            try:
                sock.shutdown(socket.SHUT_RDWR)  # wakes a read blocked in recv on the capture thread
            except OSError:
                pass
        self._response.close()
        self._conn.close()
