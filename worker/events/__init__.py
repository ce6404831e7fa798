"""Events (#14): tracking a camera's objects, zones and lines, event records, clips, MQTT, webhooks.

The tracking stage runs inside worker processes, one owner per camera; these modules are its parts:
`ordering` (records back in (run, seq) order), `tracking` (track ids), `geometry` (zones, lines),
`lifecycle` (new/update/end messages, counts), `clips` (H.264 MP4), `mqtt` and `webhooks` (delivery).
"""
