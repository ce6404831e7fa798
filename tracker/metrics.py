"""Prometheus metrics of the tracking owners, per camera (label `camera`): events, line crossings and
zone occupancy (the same figures as the camera's counts hash in Redis), frames tracked, hand-overs;
and the per-camera figures a `CameraAccount` counts. None has a field in the stats hash: the cluster
view reads events and counts from their own keys. Delivery (MQTT, webhooks) is counted per process."""

from prometheus_client import Counter, Gauge

from common.stats import Figure

EVENTS = Counter("framecast_events_total", "Event messages emitted, by label and type (new, update, end)",
                 ["camera", "label", "type"])
LINE_CROSSINGS = Counter("framecast_line_crossings_total", "Confirmed objects that crossed a line, by direction",
                         ["camera", "line", "direction", "label"])
ZONE_OCCUPANCY = Gauge("framecast_zone_objects", "Confirmed objects now in a zone", ["camera", "zone", "label"])
OBJECTS = Gauge("framecast_tracked_objects", "Confirmed objects now in view", ["camera", "label"])
FRAMES_PUBLISHED = Counter("framecast_tracker_frames_published_total",
                           "Annotated frames (and detection records) the tracking owner published", ["camera"])
OWNED = Gauge("framecast_tracker_owned", "1 while this process owns the camera's tracking", ["camera"])
ACQUIRED = Counter("framecast_tracker_acquired_total", "Times this process took over a camera's tracking",
                   ["camera"])
ORPHANS_ENDED = Counter("framecast_tracker_orphans_ended_total",
                        "Open events of a previous owner that this one ended on taking over", ["camera"])
ERRORS = Counter("framecast_events_errors_total",
                 "Errors the events stage survived, by chore: lease (taking a camera), owner (its tracking failed: "
                 "the lease is given up and taken again after a backoff), render (a frame published unannotated) "
                 "and retention", ["camera", "chore"])

EVENT = Figure(EVENTS)
CROSSING = Figure(LINE_CROSSINGS)
IN_ZONE = Figure(ZONE_OCCUPANCY)
IN_VIEW = Figure(OBJECTS)
PUBLISHED = Figure(FRAMES_PUBLISHED)
OWNING = Figure(OWNED)
TAKEN_OVER = Figure(ACQUIRED)
ORPHANS = Figure(ORPHANS_ENDED)
FAILURE = Figure(ERRORS)

MQTT_MESSAGES = Counter("framecast_mqtt_messages_total",
                        "MQTT messages by outcome: queued, handed to the client (sent, resent by it after a "
                        "reconnect until the broker acknowledges them) or dropped (the queue was full)",
                        ["outcome"])
WEBHOOK_DELIVERIES = Counter("framecast_webhook_deliveries_total",
                             "Webhook messages by target (scheme://host:port only) and outcome: delivered, "
                             "failed (given up: error answer, redirect, attempts spent, unserializable), "
                             "dropped (queue full, or still queued at shutdown) or retried (an attempt failed)",
                             ["target", "outcome"])
