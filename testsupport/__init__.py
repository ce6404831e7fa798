"""Launchers of real redis-server, Cluster and Sentinel set-ups shared by tests/ and bench/; not shipped in the wheel or the image."""
