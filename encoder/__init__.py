"""The live video encoder (#20): one H.264 encoder per watched camera for the whole cluster, writing
fragmented MP4 into Redis for the web tier (docs/video.md).

`fmp4` is the pure transform (BGR frames in, an init segment and one fragment per frame out);
`camera` is one leased camera's encoding loop, `service` the thread that takes the leases of the
cameras someone watches, `main` the `framecast encoder` role. It imports `common` and the tracker's
`Lease` (the same fencing lease, one implementation), nothing else of another service.
"""
