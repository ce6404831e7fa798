"""The live worker service (`framecast worker`): one loop reading cameras' frames through a Redis
consumer group, with per-camera state, group housekeeping and metrics."""
