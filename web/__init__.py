"""The web tier: MJPEG broadcaster, dashboard, snapshot/detection APIs, health and metrics."""
