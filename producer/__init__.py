"""Camera producers: read a video source, JPEG-encode once, publish envelopes to Redis Streams."""
