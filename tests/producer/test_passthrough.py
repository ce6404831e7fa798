"""JPEG passthrough: an MJPEG source's own JPEGs are published as they are, checked against an
independent demuxer (PyAV) and a real HTTP MJPEG server; resizing, opting out, frames without Huffman
tables, junk packets and hostile headers each take their defined path."""

import struct
import time
from fractions import Fraction

import av
import numpy as np
import pytest
from prometheus_client import REGISTRY

from common import jpeg
from common.errors import FramecastError
from common.keys import Keys
from common.stats import read_stats
from producer.encoding import prepare_frame
from producer.sources import FileSource, SourceJpeg, UrlSource
from tests.loopback_http import LoopbackServer, mjpeg_server
from tests.producer.test_publisher import frames_in, make_publisher, run_for


def _image(i: int, width: int = 160, height: int = 120) -> np.ndarray:
    rng = np.random.default_rng(i)
    return rng.integers(0, 255, (height, width, 3), dtype=np.uint8)


def _without_huffman_tables(data: bytes) -> bytes:
    """The JPEG with its DHT segments cut out, as many cameras' Motion-JPEG frames come."""
    out, pos = bytearray(data[:2]), 2
    while data[pos + 1] != 0xDA:
        (length,) = struct.unpack(">H", data[pos + 2:pos + 4])
        if data[pos + 1] != 0xC4:
            out += data[pos:pos + 2 + length]
        pos += 2 + length
    return bytes(out + data[pos:])


def mux_mjpeg(path, packets: list[bytes], width=160, height=120, fps=10):
    """An MJPEG AVI holding exactly these packets (no encoder involved)."""
    with av.open(str(path), "w", format="avi") as out:
        stream = out.add_stream("mjpeg", rate=fps)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuvj420p"
        for i, data in enumerate(packets):
            packet = av.Packet(data)
            packet.stream, packet.pts, packet.dts, packet.time_base = stream, i, i, Fraction(1, fps)
            out.mux(packet)
    return path


def demuxed(path) -> list[bytes]:
    with av.open(str(path)) as container:
        return [bytes(p) for p in container.demux(container.streams.video[0]) if p.size]


def passed_through(cam: str) -> float:
    return REGISTRY.get_sample_value("framecast_producer_frames_passthrough_total", {"camera": cam}) or 0.0


def test_mjpeg_file_frames_are_published_byte_for_byte(write_config, redis_url, redis_client, short_clip):
    packets = demuxed(short_clip)
    pub = make_publisher(write_config, redis_url, {"id": "pt", "source": str(short_clip), "loop": False})
    run_for(pub, 2.5)  # 12 frames at 10 fps, then the end of the file
    frames = frames_in(redis_client, "pt")
    assert [f.jpeg for f in frames] == packets
    assert all((f.width, f.height) == jpeg.dimensions(p) for f, p in zip(frames, packets, strict=True))
    assert passed_through("pt") == len(packets) == read_stats(redis_client, Keys(), "pt")["published"]
    assert all("encoded" in f.marks_us() for f in frames)


def test_wider_than_max_width_is_resized_and_reencoded(write_config, redis_url, redis_client, short_clip):
    packets = demuxed(short_clip)
    pub = make_publisher(write_config, redis_url,
                         {"id": "small", "source": str(short_clip), "loop": False, "max_width": 384})
    run_for(pub, 2.5)
    frames = frames_in(redis_client, "small")
    assert len(frames) == len(packets) and passed_through("small") == 0
    assert {(f.width, f.height) for f in frames} == {(384, 288)}
    assert all(jpeg.dimensions(f.jpeg) == (384, 288) for f in frames)


def test_opting_out_reencodes_at_the_configured_quality(write_config, redis_url, redis_client, short_clip):
    packets = demuxed(short_clip)
    pub = make_publisher(write_config, redis_url, {"id": "off", "source": str(short_clip), "loop": False,
                                                   "jpeg_passthrough": False, "jpeg_quality": 20})
    run_for(pub, 2.5)
    frames = frames_in(redis_client, "off")
    assert len(frames) == len(packets) and passed_through("off") == 0
    assert not pub.source.raw_jpeg
    # quality 20 is far smaller than the clip's own frames: they were re-encoded, not forwarded
    assert sum(len(f.jpeg) for f in frames) < 0.6 * sum(len(p) for p in packets)


def test_frames_without_huffman_tables_get_the_standard_ones(write_config, redis_url, redis_client, tmp_path):
    originals = [jpeg.encode(_image(i), 85) for i in range(4)]
    stripped = [_without_huffman_tables(j) for j in originals]
    assert all(not jpeg.header(s).huffman_tables for s in stripped)
    clip = mux_mjpeg(tmp_path / "nodht.avi", stripped)
    pub = make_publisher(write_config, redis_url, {"id": "dht", "source": str(clip), "loop": False})
    run_for(pub, 1.5)
    frames = frames_in(redis_client, "dht")
    assert len(frames) == 4 and passed_through("dht") == 4
    for frame, original in zip(frames, originals, strict=True):
        assert jpeg.header(frame.jpeg).huffman_tables
        assert np.array_equal(jpeg.decode(frame.jpeg), jpeg.decode(original))  # the very same picture


def test_a_junk_packet_is_dropped_and_counted_the_rest_flow(write_config, redis_url, redis_client, tmp_path):
    packets = [jpeg.encode(_image(i), 80) for i in range(5)]
    packets[2] = b"\x00not a jpeg" * 20
    clip = mux_mjpeg(tmp_path / "junk.avi", packets)
    pub = make_publisher(write_config, redis_url, {"id": "junk", "source": str(clip), "loop": False})
    run_for(pub, 1.5)
    assert [f.jpeg for f in frames_in(redis_client, "junk")] == packets[:2] + packets[3:]
    stats = read_stats(redis_client, Keys(), "junk")
    assert stats["published"] == 4 and stats["dropped"] == 1


def test_non_mjpeg_sources_are_decoded_as_before(short_clip):
    from common import assets

    source = FileSource(assets.sample_path(), passthrough=True)  # MPEG-4 part 2: no JPEG to forward
    source.open()
    assert not source.raw_jpeg and isinstance(source.read(), np.ndarray)
    source.close()
    mjpeg = FileSource(short_clip, passthrough=True)
    mjpeg.open()
    assert mjpeg.raw_jpeg and isinstance(mjpeg.read(), SourceJpeg)
    mjpeg.close()


def test_hostile_header_is_refused_before_decoding():
    small = jpeg.encode(_image(1, 32, 24), 80)
    head = jpeg.header(small)
    at = head.sof_offset + 5  # SOF: length(2) precision(1) height(2) width(2)
    huge = small[:at] + struct.pack(">HH", 60000, 60000) + small[at + 4:]
    with pytest.raises(FramecastError, match="exceeds"):
        prepare_frame(SourceJpeg(huge), max_width=1280, quality=80, max_pixels=33_177_600)
    data, width, height, forwarded = prepare_frame(SourceJpeg(small), 1280, 80, max_pixels=33_177_600)
    assert (data, width, height, forwarded) == (small, 32, 24, True)


def mjpeg_camera(jpegs: list[bytes]) -> LoopbackServer:
    """A camera's HTTP MJPEG endpoint on loopback: multipart/x-mixed-replace of the given JPEGs, looped."""

    def serve(out) -> None:
        for i in range(10_000):
            data = jpegs[i % len(jpegs)]
            out.write(b"--frame\r\nContent-Type: image/jpeg\r\nContent-Length: %d\r\n\r\n" % len(data) + data + b"\r\n")
            time.sleep(0.02)

    return mjpeg_server(serve)


def test_http_mjpeg_camera_is_forwarded_as_it_serves():
    jpegs = [jpeg.encode(_image(i), 75) for i in range(6)]
    server = mjpeg_camera(jpegs)
    try:
        source = UrlSource(server.url("/video.mjpg"), passthrough=True)
        source.open()
        try:
            assert source.raw_jpeg
            got = [source.read() for _ in range(8)]
        finally:
            source.close()
    finally:
        server.close()
    assert all(isinstance(g, SourceJpeg) and g.data in jpegs for g in got)
