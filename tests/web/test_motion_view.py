"""The motion view (`/video_feed/<cam>?motion=1`): the annotated frames with the producer's motion
boxes and the inspected regions drawn, from one feed of its own; the plain view stays byte for byte
the workers' JPEG."""

import threading
import time

import cv2
import numpy as np

from common import envelope
from common.envelope import Frame, Motion
from common.keys import FRAME_FIELD
from tests.web.conftest import KEYS, read_parts

BOX = (20, 30, 120, 110)  # the motion box, yellow
REGION = [5, 5, 155, 115]  # the square the model ran on, cyan


def frame_jpeg() -> bytes:
    return cv2.imencode(".jpg", np.full((120, 160, 3), 90, np.uint8), [cv2.IMWRITE_JPEG_QUALITY, 95])[1].tobytes()


def publish_gated(client, stop: threading.Event) -> None:
    seq = 0
    while not stop.is_set():
        frame = Frame("cam1", 1, seq, time.time_ns(), 160, 120, frame_jpeg(), [], {"regions": [REGION]},
                      Motion("regions", (BOX,)))
        client.xadd(KEYS.annotated("cam1"), {FRAME_FIELD: envelope.encode(frame)}, maxlen=50, approximate=True)
        seq += 1
        stop.wait(0.05)


def test_the_motion_view_draws_boxes_and_regions_and_the_plain_view_does_not(live_server, redis_client):
    server = live_server()
    stop = threading.Event()
    thread = threading.Thread(target=publish_gated, args=(redis_client, stop), daemon=True)
    thread.start()
    try:
        motion = read_parts(server.get("/video_feed/cam1?motion=1"), 3)
        plain = read_parts(server.get("/video_feed/cam1"), 3)
        assert set(server.state.broadcaster.feeds()) == {("cam1", "motion"), ("cam1", "annotated")}
    finally:
        stop.set()
        thread.join(5)
    assert len(motion) == 3 and len(plain) == 3
    assert all(body == frame_jpeg() for _, body in plain)
    image = cv2.imdecode(np.frombuffer(motion[-1][1], np.uint8), cv2.IMREAD_COLOR).astype(int)
    yellow = (image[:, :, 2] > 180) & (image[:, :, 1] > 160) & (image[:, :, 0] < 150)
    cyan = (image[:, :, 0] > 180) & (image[:, :, 1] > 150) & (image[:, :, 2] < 90)
    ys, xs = np.nonzero(yellow[:100])  # above the inspection text in the bottom corner
    assert abs(xs.min() - BOX[0]) <= 1 and abs(xs.max() - (BOX[2] - 1)) <= 1 and abs(ys.min() - BOX[1]) <= 1
    assert cyan[REGION[1], 50] and cyan[60, REGION[0]]
    assert not yellow[60, 70] and not cyan[60, 70]  # inside the boxes: the picture
