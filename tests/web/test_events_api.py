"""The events API on a real redis-server and a real events directory: records written by the worker's
EventStore, snapshots by EventFiles, H.264 clips by the clip writer (PyAV/libx264)."""

import http.client
import json
import secrets
import time
from urllib.parse import quote

import av
import pytest

from common.config import load_config
from common.keys import EVENT_FIELD
from tests.web.conftest import KEYS, LiveServer, jpeg_of
from tracker.clips import write_clip
from tracker.lifecycle import EventMessage
from tracker.recordings import EventFiles
from tracker.store import EventStore

LINE = {"name": "door", "points": [[0.1, 0.5], [0.9, 0.5]], "in_side": "right"}
T = 1_795_000_000.0  # 2026-11-18: real epochs (above 1e11 they would be read as milliseconds)
ZONE = {"name": "drive", "points": [[0.0, 0.6], [1.0, 0.6], [1.0, 1.0], [0.0, 1.0]]}


def event_state(cam: str, start: float, label: str = "person", zones=(), lines=(), end: float | None = None,
                clip: bool = False, event_id: str | None = None) -> dict:
    """An event's `after` state in the lifecycle's shape."""
    event_id = event_id or f"{start:.6f}-{secrets.token_hex(3)}"
    return {
        "id": event_id, "camera": cam, "label": label, "track_id": 1, "score": 0.8, "top_score": 0.9,
        "box": [10, 20, 60, 110], "frame_time": end or start, "start_time": start, "end_time": end,
        "current_zones": [], "entered_zones": list(zones),
        "lines_crossed": [{"line": name, "direction": "in", "time": start + 0.5} for name in lines],
        "has_snapshot": True, "has_clip": clip,
        "snapshot": {"frame_time": start, "box": [10, 20, 60, 110], "score": 0.9},
    }


class Seeder:
    """Writes events as the tracking owner does: the record in Redis, the snapshot and clip on disk."""

    def __init__(self, client, root):
        self.store = EventStore(client, KEYS)
        self.files = EventFiles(root)

    def event(self, cam: str, start: float, *, snapshot: bool = True, clip_frames: int = 0, **fields) -> dict:
        state = event_state(cam, start, clip=clip_frames > 0, end=start + 2 if clip_frames else None, **fields)
        if snapshot:
            self.files.write_snapshot(cam, state["id"], jpeg_of(int(start) % 100, size=(320, 240)))
        if clip_frames:
            path = self.files.prepare_clip(cam, state["id"])
            write_clip(path, [(start + i / 10, jpeg_of(i, size=(320, 240))) for i in range(clip_frames)], fps=10)
        self.store.save(EventMessage("end" if clip_frames else "new", state, state))
        return state


@pytest.fixture
def events_server(write_config, redis_url, redis_client, tmp_path):
    """A web app (threaded werkzeug) on two cameras with a line and a zone, and a Seeder for its
    events directory."""
    servers = []

    def _start(**web):
        cams = [{"id": "cam1", "source": "pattern", "lines": [LINE], "zones": [ZONE]},
                {"id": "cam2", "source": "pattern"}]
        path = write_config(cams, redis_url=redis_url, events={"dir": str(tmp_path / "events")}, web=web)
        server = LiveServer(load_config(path, env={}))
        servers.append(server)
        return server, Seeder(redis_client, tmp_path / "events")

    yield _start
    for server in servers:
        server.close()


def get_json(server, path, headers=None):
    response = server.get(path, headers=headers)
    return response.status, json.loads(response.read() or b"null"), response


def ids(body) -> list[str]:
    return [e["id"] for e in body["events"]]


def test_list_merges_cameras_newest_first_and_filters(events_server):
    server, seed = events_server()
    a = seed.event("cam1", T + 0)
    b = seed.event("cam2", T + 1)
    c = seed.event("cam1", T + 2, label="car", zones=["drive"])
    d = seed.event("cam2", T + 3, lines=["door"])
    e = seed.event("cam1", T + 4, zones=["drive"])

    status, body, response = get_json(server, "/api/events")
    assert status == 200 and response.getheader("Content-Type") == "application/json"
    assert ids(body) == [e["id"], d["id"], c["id"], b["id"], a["id"]] and body["next"] is None
    assert body["events"][1]["lines_crossed"][0] == {"line": "door", "direction": "in", "time": T + 3.5}
    assert "camera_errors" not in body
    assert ids(get_json(server, "/api/events?camera=cam2")[1]) == [d["id"], b["id"]]
    assert ids(get_json(server, "/api/events?label=car")[1]) == [c["id"]]
    assert ids(get_json(server, "/api/events?zone=drive")[1]) == [e["id"], c["id"]]
    assert ids(get_json(server, "/api/events?zone=drive&label=person")[1]) == [e["id"]]
    assert ids(get_json(server, f"/api/events?after={T + 1:.0f}&before={T + 3:.0f}")[1]) == [d["id"], c["id"], b["id"]]
    # Epoch milliseconds mean the same instants.
    assert ids(get_json(server, f"/api/events?after={(T + 1) * 1000:.0f}&before={(T + 3) * 1000:.0f}")[1]) == [d["id"], c["id"], b["id"]]
    assert ids(get_json(server, f"/api/events?before={T + 0.5}")[1]) == [a["id"]]
    assert ids(get_json(server, "/api/events?label=dog")[1]) == []


@pytest.mark.parametrize("query", ["after=yesterday", "after=-5", "before=nan", "before=inf", "after=5&before=4",
                                   "limit=0", "limit=1001", "limit=ten", "format=xml", "cursor=%21%21",
                                   "cursor=eyJjYW05IjpudWxsfQ", "cursor=eyJjYW0xIjpbMSwiLi4vZXRjIl19",
                                   "label=" + "x" * 129])
def test_bad_queries_are_400(events_server, query):
    server, _ = events_server()
    status, body, _ = get_json(server, "/api/events?" + query)
    assert status == 400 and body["error"] == "bad request" and body["message"]


def test_unknown_and_invalid_camera(events_server):
    server, _ = events_server()
    assert get_json(server, "/api/events?camera=nope")[0] == 404
    assert get_json(server, "/api/events?camera=a%20b")[0] == 400
    assert get_json(server, "/api/events/feed?camera=nope")[0] == 404


def test_paging_visits_every_event_once_across_cameras_and_ties(events_server):
    server, seed = events_server()
    expected = []
    for i in range(7):
        expected.append(seed.event("cam1", 2000.0 + i))
        if i % 2 == 0:
            expected.append(seed.event("cam2", 2000.0 + i))  # same start time as a cam1 event: a tie
    expected.append(seed.event("cam1", 2003.0))  # a tie within one camera
    everything = ids(get_json(server, "/api/events?limit=1000")[1])
    assert sorted(everything) == sorted(e["id"] for e in expected)
    starts = [next(e["start_time"] for e in expected if e["id"] == i) for i in everything]
    assert starts == sorted(starts, reverse=True)

    for limit in (1, 2, 3, 5):
        seen, cursor, pages = [], None, 0
        while True:
            path = f"/api/events?limit={limit}" + (f"&cursor={cursor}" if cursor else "")
            status, body, _ = get_json(server, path)
            assert status == 200 and len(body["events"]) <= limit
            seen += ids(body)
            pages += 1
            cursor = body["next"]
            if cursor is None:
                break
            assert pages < 50
        assert seen == everything, f"limit {limit}"

    # A filtered query pages the same way, and the cursor stays within the filter.
    first = get_json(server, "/api/events?camera=cam2&limit=2")[1]
    second = get_json(server, f"/api/events?camera=cam2&limit=2&cursor={first['next']}")[1]
    assert ids(first) + ids(second) == [i for i in everything if i.startswith("200") and
                                         any(e["id"] == i and e["camera"] == "cam2" for e in expected)][:4]
    # A cursor of an all-camera query names cam1, which a cam2-only query refuses.
    assert get_json(server, f"/api/events?camera=cam2&cursor={get_json(server, '/api/events?limit=1')[1]['next']}")[0] \
        == 400


def test_ndjson_by_accept_or_format(events_server):
    server, seed = events_server()
    first = seed.event("cam1", 3000.0)
    second = seed.event("cam2", 3001.0)
    for path, headers in (("/api/events?limit=1", {"Accept": "application/x-ndjson"}),
                          ("/api/events?limit=1&format=ndjson", {})):
        response = server.get(path, headers=headers)
        assert response.status == 200 and response.getheader("Content-Type") == "application/x-ndjson"
        lines = response.read().decode().splitlines()
        assert [json.loads(line)["id"] for line in lines] == [second["id"]]
        cursor = response.getheader("X-Next-Cursor")
        rest = server.get(f"/api/events?format=ndjson&cursor={cursor}").read().decode().splitlines()
        assert [json.loads(line)["id"] for line in rest] == [first["id"]]
    # A browser's Accept (JSON, HTML, */*) gets JSON.
    assert get_json(server, "/api/events", headers={"Accept": "text/html,*/*;q=0.8"})[1]["events"]


def test_one_event_and_its_ids_checked_first(events_server):
    server, seed = events_server()
    event = seed.event("cam2", 4000.0, zones=["drive"])
    status, body, _ = get_json(server, f"/api/events/{event['id']}")
    assert status == 200 and body == event
    missing = "4000.000000-abcdef"
    assert get_json(server, f"/api/events/{missing}")[0] == 404
    assert get_json(server, f"/api/events/{missing}/snapshot.jpg")[0] == 404
    assert get_json(server, f"/api/events/{missing}/clip.mp4")[0] == 404
    assert get_json(server, f"/api/events/{event['id']}?camera=cam1")[0] == 404  # it is cam2's
    for bad in ("abc", "4000.0-abcdef", "4000.000000-ABCDEF", "..", "4000.000000-abcdef.jpg", "x" * 500):
        for suffix in ("", "/snapshot.jpg", "/clip.mp4"):
            status, body, _ = get_json(server, f"/api/events/{quote(bad, safe='')}{suffix}")
            assert status == 400 and body["error"] == "invalid event id", (bad, suffix)
    # Encoded slashes never reach the disk: the route does not match, or the id is refused.
    for sneaky in ("..%2F..%2Fcam2%2F" + event["id"], "%2E%2E%2Fcam2"):
        response = server.get(f"/api/events/{sneaky}/snapshot.jpg")
        assert response.status in (400, 404) and not response.read().startswith(b"\xff\xd8")  # no JPEG


def test_snapshot_and_clip_with_ranges(events_server, tmp_path):
    server, seed = events_server()
    event = seed.event("cam1", 5000.0, clip_frames=30)
    snap = server.get(f"/api/events/{event['id']}/snapshot.jpg")
    assert snap.status == 200 and snap.getheader("Content-Type") == "image/jpeg"
    assert snap.read() == seed.files.snapshot_path("cam1", event["id"]).read_bytes()

    clip_path = seed.files.clip_path("cam1", event["id"])
    data = clip_path.read_bytes()
    url = f"/api/events/{event['id']}/clip.mp4"
    whole = server.get(url)
    assert whole.status == 200 and whole.getheader("Content-Type") == "video/mp4"
    assert whole.getheader("Accept-Ranges") == "bytes" and whole.read() == data
    assert "media-src 'self'" in whole.getheader("Content-Security-Policy")
    assert whole.getheader("X-Content-Type-Options") == "nosniff"

    head = server.get(url, headers={"Range": "bytes=0-99"})
    assert head.status == 206 and head.getheader("Content-Range") == f"bytes 0-99/{len(data)}"
    assert head.getheader("Content-Type") == "video/mp4" and head.read() == data[:100]
    tail = server.get(url, headers={"Range": "bytes=100-"})
    assert tail.status == 206 and tail.getheader("Content-Range") == f"bytes 100-{len(data) - 1}/{len(data)}"
    assert tail.read() == data[100:]
    suffix = server.get(url, headers={"Range": "bytes=-50"})
    assert suffix.status == 206 and suffix.read() == data[-50:]
    beyond = server.get(url, headers={"Range": f"bytes={len(data) + 10}-"})
    assert beyond.status == 416 and beyond.getheader("Content-Range") == f"bytes */{len(data)}"
    beyond.read()

    with av.open(str(clip_path)) as container:  # what was served is a real H.264 clip
        stream = container.streams.video[0]
        assert stream.codec_context.name == "h264"
        assert sum(1 for _ in container.decode(stream)) == 30


def test_refused_keys_are_reported_per_camera(events_server, redis_client):
    server, seed = events_server()
    good = seed.event("cam1", 6000.0)
    seed.event("cam2", 6001.0)
    redis_client.delete(KEYS.events("cam2"))
    redis_client.set(KEYS.events("cam2"), "not a zset")
    status, body, _ = get_json(server, "/api/events")
    assert status == 200 and ids(body) == [good["id"]]
    assert "WRONGTYPE" in body["camera_errors"]["cam2"] and KEYS.events("cam2") in body["camera_errors"]["cam2"]
    response = server.get("/api/events?format=ndjson")
    assert response.status == 200 and "cam2" in json.loads(response.getheader("X-Camera-Errors"))
    assert [json.loads(line)["id"] for line in response.read().decode().splitlines()] == [good["id"]]
    # The next page leaves that camera out rather than failing again for ever.
    first = get_json(server, "/api/events?limit=1")[1]
    assert "cam2" in first["camera_errors"]
    rest = get_json(server, f"/api/events?limit=1&cursor={first['next']}")[1]
    assert rest == {"events": [], "next": None}

    redis_client.rpush(KEYS.counts("cam2"), "not a hash")
    redis_client.hset(KEYS.counts("cam1"), mapping={"line:door:in:person": 3, "line:door:out:person": 1,
                                                     "line:door:in:traffic light": 2, "zone:drive:car": 1,
                                                     "zone:drive:person": 0, "junk": 5})
    status, body, _ = get_json(server, "/api/cameras")
    assert status == 200
    cam1, cam2 = body["cameras"]
    assert cam1["lines"] == [{"name": "door", "points": [[0.1, 0.5], [0.9, 0.5]], "in_side": "right", "labels": []}]
    assert cam1["zones"][0]["name"] == "drive" and len(cam1["zones"][0]["points"]) == 4
    assert cam1["counts"] == {"lines": {"door": {"in": {"person": 3, "traffic light": 2}, "out": {"person": 1}}},
                              "zones": {"drive": {"car": 1, "person": 0}}}
    assert cam2["counts"] is None and "WRONGTYPE" in cam2["counts_error"] and cam2["lines"] == []
    assert get_json(server, "/api/cameras/cam1")[1]["counts"] == cam1["counts"]


def read_line(response) -> bytes:
    """One line of a streaming (chunked) response; the connection's timeout bounds the wait."""
    return response.readline()


def test_feed_delivers_messages_written_after_it_started(events_server, redis_client):
    server, seed = events_server()
    old = {"type": "new", "before": {}, "after": {"id": "1.000000-aaaaaa"}}
    redis_client.xadd(KEYS.eventfeed("cam1"), {EVENT_FIELD: json.dumps(old)})  # history: not replayed
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
    conn.request("GET", "/api/events/feed")
    response = conn.getresponse()
    assert response.status == 200 and response.getheader("Content-Type") == "application/x-ndjson"
    assert response.getheader("X-Accel-Buffering") == "no"
    assert read_line(response) == b"\n"  # open
    fresh = {"type": "end", "before": {"id": "7000.000000-bbbbbb"}, "after": {"id": "7000.000000-bbbbbb",
                                                                              "end_time": 7002.0}}
    entry_id = redis_client.xadd(KEYS.eventfeed("cam2"), {EVENT_FIELD: json.dumps(fresh)})
    line = read_line(response)
    assert json.loads(line) == {"camera": "cam2", "feed_id": entry_id.decode(), **fresh}
    # An event recorded as the tracking owner records it (record, feed and counts in one script).
    recorded = seed.event("cam1", T + 50, zones=["drive"])
    line = json.loads(read_line(response))
    assert line["camera"] == "cam1" and line["type"] == "new" and line["after"] == recorded
    # Shutdown ends the feed (as SIGTERM does in production) within a block interval.
    server.state.stopping.set()
    started = time.monotonic()
    rest = response.read()
    assert time.monotonic() - started < 5 and rest.strip() == b""
    conn.close()


def test_feed_as_server_sent_events_with_keepalives(events_server, redis_client, monkeypatch):
    monkeypatch.setattr("web.followers.KEEPALIVE_S", 0.5)
    server, _ = events_server()
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
    conn.request("GET", "/api/events/feed?camera=cam1", headers={"Accept": "text/event-stream"})
    response = conn.getresponse()
    assert response.status == 200 and response.getheader("Content-Type").startswith("text/event-stream")
    assert read_line(response) == b": keep-alive\n" and read_line(response) == b"\n"
    assert read_line(response) == b": keep-alive\n"  # idle: another keep-alive after KEEPALIVE_S
    read_line(response)
    redis_client.xadd(KEYS.eventfeed("cam2"), {EVENT_FIELD: b'{"type":"new"}'})  # not asked for
    message = {"type": "update", "before": {}, "after": {"id": "8000.000000-dddddd"}}
    entry_id = redis_client.xadd(KEYS.eventfeed("cam1"), {EVENT_FIELD: json.dumps(message)}).decode()
    block = b""
    while not block.endswith(b"\n\n") or block.startswith(b":"):
        block = b"" if block.startswith(b":") and block.endswith(b"\n\n") else block
        block += read_line(response)
    lines = block.decode().splitlines()
    assert lines[0] == "event: update" and lines[1] == f"id: cam1/{entry_id}"
    assert json.loads(lines[2].removeprefix("data: ")) == {"camera": "cam1", "feed_id": entry_id, **message}
    server.state.stopping.set()
    response.read()
    conn.close()


def test_token_guards_events_and_clips(events_server):
    server, seed = events_server(token="s3cret")
    event = seed.event("cam1", 9000.0, clip_frames=5)
    assert server.get("/api/events").status == 401
    assert server.get(f"/api/events/{event['id']}/clip.mp4").status == 401
    assert server.get("/api/events/feed").status == 401
    assert server.get("/api/events?token=s3cret").status == 200
    ranged = server.get(f"/api/events/{event['id']}/clip.mp4?token=s3cret", headers={"Range": "bytes=0-9"})
    assert ranged.status == 206 and len(ranged.read()) == 10


def test_feed_under_gunicorn_and_gevent(web_process, redis_client, tmp_path):
    """The feed as production serves it: XREAD BLOCK on a gevent worker, SIGTERM ends it."""
    server = web_process(cameras=[{"id": "cam1", "source": "pattern"}], events={"dir": str(tmp_path / "events")})
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=15)
    conn.request("GET", "/api/events/feed?format=ndjson")
    response = conn.getresponse()
    assert response.status == 200 and read_line(response) == b"\n"
    for n in range(3):
        message = {"type": "update", "before": {}, "after": {"id": f"9100.000000-00000{n}"}}
        redis_client.xadd(KEYS.eventfeed("cam1"), {EVENT_FIELD: json.dumps(message)})
        assert json.loads(read_line(response))["after"]["id"] == f"9100.000000-00000{n}"
    started = time.monotonic()
    server.stop()  # SIGTERM: the open feed must not hold the process up
    assert time.monotonic() - started < 8  # well inside gunicorn's 10 s graceful timeout
    assert response.read().strip() == b""  # the feed ended cleanly
    conn.close()
