"""What a camera id is: the one pattern every Redis key, URL, envelope and event folder relies on."""

from __future__ import annotations

import re

from common.errors import InvalidCameraIdError

CAMERA_ID_RE = re.compile(r"^[A-Za-z0-9_-]{1,64}$")


def validate_camera_id(camera_id: str) -> str:
    """Return camera_id if it is a valid id, else raise InvalidCameraIdError. Called by every entry point."""
    if not isinstance(camera_id, str) or not CAMERA_ID_RE.match(camera_id):
        raise InvalidCameraIdError(
            f"invalid camera id {str(camera_id)[:80]!r}: use 1-64 characters from A-Z a-z 0-9 _ -"
        )
    return camera_id
