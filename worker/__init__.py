"""Detector workers: the detection library, the Redis consumer loop and offline processing."""
