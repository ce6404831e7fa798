"""The motion view of a camera (`/video_feed/<cam>?motion=1`, the dashboard's "motion" toggle): its
annotated frames with the producer's motion boxes (yellow) and the squares the model ran on (cyan)
drawn on top, so an operator sees what motion gating sees and tunes `motion.threshold`, `min_area`
and masks against it. Drawn once per frame per web process for all of the view's viewers, and only
while someone watches it: it costs a decode and an encode per frame (the plain views cost neither).
"""

from __future__ import annotations

import cv2

from common import jpeg
from common.envelope import Frame

MOTION = (0, 215, 255)  # BGR yellow
REGION = (255, 200, 0)  # BGR cyan
QUALITY = 80


def render(frame: Frame) -> bytes:
    """The frame's JPEG with its motion boxes and inspected regions drawn, and how it was inspected
    written in the corner; the JPEG as it is when the frame carries no motion verdict."""
    if frame.motion is None:
        return frame.jpeg
    image = jpeg.decode(frame.jpeg)
    for x1, y1, x2, y2 in frame.motion.boxes:
        cv2.rectangle(image, (x1, y1), (x2 - 1, y2 - 1), MOTION, 2)
    for box in frame.meta.get("regions") or ():
        if isinstance(box, list) and len(box) == 4:
            x1, y1, x2, y2 = (int(v) for v in box)
            cv2.rectangle(image, (x1, y1), (x2 - 1, y2 - 1), REGION, 2)
    text = f"inspect: {frame.motion.inspect}"
    cv2.putText(image, text, (8, image.shape[0] - 10), cv2.FONT_HERSHEY_SIMPLEX, 0.5, (0, 0, 0), 3, cv2.LINE_AA)
    cv2.putText(image, text, (8, image.shape[0] - 10), cv2.FONT_HERSHEY_SIMPLEX, 0.5, MOTION, 1, cv2.LINE_AA)
    return jpeg.encode(image, QUALITY)
