"""The state one web process's routes share, and how a route finds it."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field

import redis
from flask import current_app

from common.config import Settings
from common.keys import Keys
from web.broadcaster import Broadcaster
from web.figures import SharedFigures
from web.followers import Followers
from web.limits import StreamLimit
from web.video_broadcaster import VideoBroadcaster

EXTENSION = "framecast"  # the key of WebState in app.extensions


@dataclass
class WebState:
    """Everything the routes of one web process share."""

    settings: Settings
    client: redis.Redis
    keys: Keys
    broadcaster: Broadcaster
    followers: Followers  # the readers behind followed streams (event feed, detections?follow=1)
    stream_limit: StreamLimit  # MJPEG streams per client
    feed_limit: StreamLimit  # followed streams per client: the same cap, counted apart
    figures: SharedFigures  # the camera figures, once per interval for every caller
    stopping: threading.Event = field(default_factory=threading.Event)
    video: VideoBroadcaster | None = None  # the H.264 viewers' feeds (web.live_video)

    def shutdown(self) -> None:
        """End every stream (MJPEG and H.264 viewers, followed detections) and the figures' refresher so the
        process can exit promptly (SIGTERM in production)."""
        self.stopping.set()
        self.broadcaster.close()
        if self.video is not None:
            self.video.close()
        self.followers.close()


def state() -> WebState:
    """The WebState of the app handling the current request."""
    return current_app.extensions[EXTENSION]
