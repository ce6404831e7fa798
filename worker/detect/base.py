"""The one small interface every detector backend implements."""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass

import numpy as np

from common.envelope import Detection


@dataclass(frozen=True)
class ModelInfo:
    """What a loaded model is: its backend, file, label map and input size (height, width)."""

    backend: str
    path: str
    labels: dict[int, str]
    input_size: tuple[int, int]


class Detector(ABC):
    """Loaded once per process; `detect` is called per frame from one thread at a time."""

    info: ModelInfo

    @abstractmethod
    def detect(self, image: np.ndarray) -> list[Detection]:
        """Detect objects in a BGR uint8 image of any size.

        Returns every detection the model reports (unfiltered by camera settings), boxes as
        (x1, y1, x2, y2) pixel coordinates of `image`, clipped to it.
        """
