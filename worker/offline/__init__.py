"""`framecast process`: annotate a recorded video, with a local process pool (`pool`) or through the
cluster's workers (`via_redis`); both write through one in-order writer (`output`)."""
