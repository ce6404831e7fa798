"""Detection: the detection library (`worker.detect`), the live worker service (`worker.live`) and
`framecast process` (`worker.offline`)."""
