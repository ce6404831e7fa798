"""The detector-backend contract and its registry: what a backend plugin declares, and where the
registry finds them (the `framecast.detectors` entry points of the installed distributions).

Configuration needs the backends' keys and their own settings to validate `detection.*` at start-up,
and the worker needs the same declarations to load a model; neither may know the other, so the
declaration lives here and the plugins (`worker/detect/backends/*.py`) register through packaging
metadata. A plugin module must stay light to import (no runtime such as TensorFlow at module level):
any service validating a config may read its declaration.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import cache
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict

from common.errors import FramecastError

ENTRY_POINT_GROUP = "framecast.detectors"


class BackendOptions(BaseModel):
    """Base of a backend's own `detection.*` settings; a backend without any uses it as is, so every
    backend-specific field set for it is an error that names the field."""

    model_config = ConfigDict(extra="forbid")


@dataclass(frozen=True)
class DetectorBackend:
    """What a backend plugin declares (its module's `PLUGIN`).

    `first_class_id` is the class id the runtime reports for a label map's first entry (TFLite SSD
    exports count from 0, TF Object Detection API SavedModels from 1). `check_model` returns what is
    wrong with a model path for this backend, or None. `default_files` gives (model, labels) of the
    model meant by `detection.model: default`; None means the backend has no bundled model.
    `find_labels` looks for a label map that ships with a model. `load(model, labels, label_offset,
    options)` builds the detector; it is the only place a runtime is imported.
    """

    key: str
    summary: str
    first_class_id: int
    load: Callable[..., Any]
    check_model: Callable[[Path], str | None]
    options: type[BackendOptions] = BackendOptions
    default_files: Callable[[], tuple[Path, Path]] | None = None
    find_labels: Callable[[Path], Path | None] = lambda model: None


class UnknownBackendError(FramecastError):
    """A detection.backend no installed plugin declares."""


def backend_names() -> list[str]:
    """The keys of the installed backends, from packaging metadata (no plugin is imported)."""
    return sorted({ep.name for ep in entry_points(group=ENTRY_POINT_GROUP)})


@cache
def backend(key: str) -> DetectorBackend:
    """The declaration of backend `key`, imported on first use."""
    found = [ep for ep in entry_points(group=ENTRY_POINT_GROUP) if ep.name == key]
    if not found:
        raise UnknownBackendError(f"unknown detector backend {key!r}: installed backends are "
                                  f"{', '.join(backend_names()) or 'none (reinstall framecast)'}")
    plugin = found[0].load()
    if not isinstance(plugin, DetectorBackend) or plugin.key != key:
        raise UnknownBackendError(f"entry point {found[0].value!r} does not declare a DetectorBackend {key!r}")
    return plugin
