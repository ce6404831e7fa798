"""Followers of the event feed and of detections share one Redis reader per stream per web process,
so hundreds of them leave the connection pool (redis-py caps it at 100) to every other route; and
each client may hold only `web.max_streams_per_client` feeds open at once (beyond: 429)."""

import http.client
import json
import time

from common.keys import DETECTIONS_FIELD, EVENT_FIELD
from tests.web.conftest import KEYS, publish

FOLLOWERS = 300
CAMERAS = [{"id": "cam1", "source": "pattern"}, {"id": "cam2", "source": "pattern"}]


def _open(port: int, path: str) -> tuple[http.client.HTTPConnection, http.client.HTTPResponse]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    conn.request("GET", path)
    return conn, conn.getresponse()


def _redis_clients(redis_client) -> int:
    return redis_client.info("clients")["connected_clients"]


def _message(n: int) -> dict:
    return {"type": "new", "before": {}, "after": {"id": f"{9500 + n}.000000-00000{n % 10}"}}


def test_hundreds_of_followers_leave_redis_to_the_other_routes(web_process, redis_client, tmp_path):
    before = _redis_clients(redis_client)
    server = web_process(cameras=CAMERAS, events={"dir": str(tmp_path / "events")},
                         web={"max_streams_per_client": 0, "stale_after": 30})
    publish(redis_client, "cam1", 1)
    publish(redis_client, "cam2", 1)
    followers = []
    try:
        for n in range(FOLLOWERS):
            # Every third one follows cam1's detections instead of the event feed: both are followers.
            path = "/api/cameras/cam1/detections?follow=1" if n % 3 == 2 else "/api/events/feed"
            conn, response = _open(server.port, path)
            followers.append((path, conn, response))
        statuses = [response.status for _, _, response in followers]
        assert statuses.count(200) == FOLLOWERS, {s: statuses.count(s) for s in set(statuses)}
        for _, _, response in followers:
            assert response.readline() == b"\n"  # the feed is open
        # Every other route still answers while all of them are open.
        for path in ("/api/cameras", "/snapshot/cam1.jpg", "/api/events", "/api/cameras/cam1", "/readyz"):
            answer = server.get(path)
            body = answer.read()
            assert answer.status == 200, (path, answer.status, body[:300])
        in_use = _redis_clients(redis_client) - before
        figures = dict(line.rsplit(" ", 1) for line in server.get("/metrics").read().decode().splitlines()
                       if line.startswith(("framecast_web_followers ", "framecast_web_follow_readers ")))
        # One reader per followed stream: cam1's and cam2's event feeds, cam1's detections.
        assert {name: float(value) for name, value in figures.items()} == {
            "framecast_web_followers": FOLLOWERS, "framecast_web_follow_readers": 3}
        assert in_use <= 20, f"the web process holds {in_use} Redis connections for {FOLLOWERS} followers"
        # Events and detections written now reach every one of their followers, in order.
        feed_ids = [redis_client.xadd(KEYS.eventfeed(cam), {EVENT_FIELD: json.dumps(_message(n))}).decode()
                    for n, cam in enumerate(("cam1", "cam2", "cam1"))]
        detection_id = redis_client.xadd(KEYS.detections("cam1"), {DETECTIONS_FIELD: b'{"seq":7}'}).decode()
        for path, _, response in followers:
            if "detections" in path:
                line = response.readline()
                while line == b"\n":
                    line = response.readline()
                assert json.loads(line) == {"id": detection_id, "seq": 7}
                continue
            got = []
            while len(got) < 3:
                line = response.readline()
                assert line, "the feed ended early"
                if line.strip():
                    got.append(json.loads(line)["feed_id"])
            assert got == feed_ids
    finally:
        for _, conn, _ in followers:
            conn.close()
    server.stop()


def test_feeds_have_the_per_client_cap_of_streams(web_process, redis_client, tmp_path):
    server = web_process(cameras=CAMERAS, events={"dir": str(tmp_path / "events")},
                         web={"max_streams_per_client": 3})
    held = [_open(server.port, "/api/events/feed") for _ in range(3)]
    try:
        assert [response.status for _, response in held] == [200, 200, 200]
        conn, refused = _open(server.port, "/api/events/feed")
        assert refused.status == 429 and b"at most 3" in refused.read()
        conn.close()
        conn, refused = _open(server.port, "/api/cameras/cam1/detections?follow=1")
        assert refused.status == 429
        conn.close()
        # A detections read that does not follow is not a stream, and other routes are not capped.
        assert server.get("/api/cameras/cam1/detections").status == 200
        assert server.get("/api/cameras").status == 200
        held.pop()[0].close()  # one closes: its slot comes back (once the server saw it go)
        deadline = time.monotonic() + 25  # the server sees the close at its next writes (keep-alives)
        while True:
            conn, again = _open(server.port, "/api/events/feed")
            if again.status == 200:
                held.append((conn, again))
                break
            conn.close()
            assert again.status == 429 and time.monotonic() < deadline
            time.sleep(0.2)
    finally:
        for conn, _ in held:
            conn.close()
    server.stop()
