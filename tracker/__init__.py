"""The tracker, events (#14): tracking a camera's objects, zones and lines, event records, clips, MQTT,
webhooks. It reads what the detect workers write (common/untracked.py) and uses the vision library
(`worker.detect`: drawing, H.264), nothing else of the worker's.

The tracking stage runs inside `framecast worker` processes (beside detection, framecast/worker_role.py)
or `framecast tracker` ones (main.py), one owner per camera; these modules are its parts:
`ordering` (records back in (run, seq) order), `tracking` (track ids), `geometry` (zones, lines),
`lifecycle` (new/update/end messages, counts), `clips` (H.264 MP4), `mqtt` and `webhooks` (delivery).
"""
