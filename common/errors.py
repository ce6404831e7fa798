"""Exception types for errors a user can cause. Each message says what to do about it."""


class FramecastError(Exception):
    """Base class for framecast's own errors."""


class ConfigError(FramecastError):
    """The configuration is invalid; the message names the file and the field."""


class EnvelopeError(FramecastError):
    """A frame envelope could not be decoded (malformed, truncated, oversized or wrong version)."""


class UnknownCameraError(FramecastError):
    """A camera id was asked for that the configuration does not define."""

    def __init__(self, camera_id: str):
        super().__init__(f"unknown camera {camera_id!r}: add it to the config's cameras list")
        self.camera_id = camera_id


class InvalidCameraIdError(FramecastError):
    """A string was used as a camera id that does not match the allowed pattern."""


class SourceError(FramecastError):
    """A video source could not be opened or read. Messages never contain credentials."""


class AssetError(FramecastError):
    """A model or sample asset is missing or failed its checksum."""
