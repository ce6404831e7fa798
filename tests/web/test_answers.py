"""Replayed answers of /api/cameras (web.answers): identical polls between two refreshes get the app's
own first answer again, byte for byte and header for header; a refresh is seen at the next request;
each query and each Authorization gets its own answer; refusals and errors are never replayed."""

import http.client
import json
import time

from common.stats import StatsWriter
from tests.web.conftest import KEYS, publish

CAMERAS = [{"id": f"cam{i}", "source": "pattern"} for i in range(4)]


def _published(redis_client, cam: str, count: int) -> None:
    stats = StatsWriter(redis_client, KEYS, cam)
    stats.incr("published", count)
    stats.flush()


def _answer(response) -> tuple[int, dict, bytes]:
    return response.status_code, dict(response.headers), response.get_data()


def test_identical_polls_get_the_first_answer_again(app_for, redis_client):
    publish(redis_client, "cam1", 1)
    app = app_for(CAMERAS, figures_interval=30)
    answers = app.wsgi_app
    client = app.test_client()
    query = "/api/cameras?camera=cam1,cam2"
    first = _answer(client.get(query))
    assert first[0] == 200 and answers.replays == 0
    again = [_answer(client.get(query)) for _ in range(5)]
    assert answers.replays == 5 and all(a == first for a in again)  # same bytes, same headers
    assert first[1]["Content-Security-Policy"].startswith("default-src 'none'")
    assert first[1]["Content-Type"] == "application/json"
    body = json.loads(first[2])
    assert [c["id"] for c in body["cameras"]] == ["cam1", "cam2"] and body["total"] == 2
    # Another query is answered by the app from the same figures, then replayed in its turn.
    other = _answer(client.get("/api/cameras?status=live"))
    assert answers.replays == 5 and [c["id"] for c in json.loads(other[2])["cameras"]] == ["cam1"]
    assert _answer(client.get("/api/cameras?status=live")) == other and answers.replays == 6
    assert _answer(client.get(query)) == first and answers.replays == 7
    assert app.extensions["framecast"].figures.refreshes == 1  # every answer from one computation


def test_a_refresh_is_seen_at_the_next_request(app_for, redis_client):
    _published(redis_client, "cam0", 5)
    app = app_for(CAMERAS, figures_interval=0.3)
    figures = app.extensions["framecast"].figures
    client = app.test_client()
    query = "/api/cameras?camera=cam0"
    assert client.get(query).json["cameras"][0]["published"] == 5
    _published(redis_client, "cam0", 2)
    # The second refresh to end from now began after the write (the first may have begun before it).
    refreshes = figures.refreshes
    deadline = time.monotonic() + 10
    while figures.refreshes < refreshes + 2:  # the polls keep the refresher going
        assert client.get(query).status_code == 200
        assert time.monotonic() < deadline, "the figures were not refreshed"
        time.sleep(0.02)
    for _ in range(3):
        assert client.get(query).json["cameras"][0]["published"] == 7


def test_interval_zero_computes_every_answer(app_for, redis_client):
    app = app_for(CAMERAS, figures_interval=0)
    client = app.test_client()
    _published(redis_client, "cam0", 1)
    assert client.get("/api/cameras").json["cameras"][0]["published"] == 1
    _published(redis_client, "cam0", 1)
    assert client.get("/api/cameras").json["cameras"][0]["published"] == 2
    assert app.wsgi_app.replays == 0


def test_refusals_and_errors_are_not_replayed(app_for, redis_client):
    app = app_for(CAMERAS, figures_interval=30, token="s3cret-token")
    answers = app.wsgi_app
    client = app.test_client()
    assert client.get("/api/cameras?token=s3cret-token").status_code == 200
    assert client.get("/api/cameras?token=s3cret-token").status_code == 200 and answers.replays == 1
    # The token in the query was right, but a Bearer header wins over it: that request is refused.
    wrong = {"Authorization": "Bearer wrong"}
    assert [client.get("/api/cameras?token=s3cret-token", headers=wrong).status_code for _ in range(2)] == [401, 401]
    assert [client.get("/api/cameras").status_code for _ in range(2)] == [401, 401]
    right = {"Authorization": "Bearer s3cret-token"}
    assert [client.get("/api/cameras", headers=right).status_code for _ in range(2)] == [200, 200]
    assert answers.replays == 2  # its own answer (kept apart from the one for ?token=), then a replay
    for path in ("/api/cameras?camera=nope&token=s3cret-token", "/api/cameras?status=gone&token=s3cret-token"):
        assert [client.get(path).status_code for _ in range(2)] in ([404, 404], [400, 400])
    assert client.head("/api/cameras?token=s3cret-token").status_code == 200
    assert answers.replays == 2


def test_framecast_web_replays_over_a_kept_open_connection(web_process, redis_client):
    """gunicorn + gevent as in production: the replayed answer is the app's, and a refresh shows."""
    _published(redis_client, "cam0", 3)
    web = web_process(cameras=CAMERAS, web={"figures_interval": 0.5})
    conn = http.client.HTTPConnection("127.0.0.1", web.port, timeout=10)

    def get(path):
        conn.request("GET", path)
        response = conn.getresponse()
        body = response.read()
        assert response.status == 200
        headers = {k: v for k, v in response.getheaders() if k != "Date"}
        return headers, body

    query = "/api/cameras?camera=cam0,cam3"
    first = get(query)
    assert json.loads(first[1])["cameras"][0]["published"] == 3
    bodies = {json.loads(first[1])["figures_at"]: first}
    _published(redis_client, "cam0", 4)
    deadline = time.monotonic() + 15
    while True:  # each figures_at has one answer, whichever request asked it
        headers, body = get(query)
        at = json.loads(body)["figures_at"]
        assert bodies.setdefault(at, (headers, body)) == (headers, body)
        if json.loads(body)["cameras"][0]["published"] == 7:
            break
        assert time.monotonic() < deadline, "the refresh was not seen"
        time.sleep(0.05)
    assert len(bodies) >= 2
    conn.close()
