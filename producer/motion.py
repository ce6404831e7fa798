"""One camera's motion detector: frame after frame, where the picture changed. Pure (no I/O).

Motion is found at the producer because a background model needs a camera's frames in order, and
the producer is the one place that sees them in order. It has to stay cheap there, so every frame is
reduced to a small grey working image (about `width` pixels wide) before anything else:

- `from_jpeg` (MJPEG passthrough) never decodes the full frame: libjpeg's DCT scaling decodes only
  the luma at 1/2, 1/4 or 1/8 scale (`cv2.IMREAD_REDUCED_GRAYSCALE_*`), the factor chosen from the
  size in the JPEG header so the result is the working size (1/4 for 768x576: 192x144).
- `from_image` (a frame the producer decoded anyway) halves the BGR frame with bilinear steps, which
  at exactly 2x average 2x2 pixels, as the DCT scaling does, and turns the small image grey. Both
  paths give the same working image for the same picture (within JPEG noise), so a camera's motion
  does not depend on how it is decoded.

On the working image: masked pixels are set to 0 (constant, so they never change), a 3x3 Gaussian
blur, then the absolute difference from a running-average background (`cv2.accumulateWeighted`).
A global brightness offset between frame and background (auto exposure, drifting daylight) is
measured on the pixels that changed by at most twice the threshold and subtracted first, so a uniform
change of the whole scene is not motion. The difference is thresholded at `threshold`, dilated once,
and the external contours whose area is at least `min_area` of the frame become boxes, as fractions
of the frame. The background learns at `alpha` (0.05) a frame where nothing moves, and at a quarter of
that under the motion: learning a moving object at full rate would leave a trail of boxes behind it.
So what stops moving, or the place a still object moved off, stays motion for ~110 frames at a
contrast of 100 (~180 at 250, with the default threshold) before it fades into the background.

When more than `lighting` of the unmasked area changed (lights switched, IR mode, a lens covered, or
an object filling most of the view), the background is reset to the frame: no boxes and
`recalibrated=True`; the caller should inspect the full frame. The first frame and a change of frame
size recalibrate too.

The cost per frame is fixed by the working size, whatever the threshold or the scene: sensitivity
changes how many boxes come out, and the worker's region planner caps what those boxes cost.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import cv2
import numpy as np

from common.jpeg import JpegError, check_size

ALPHA = 0.05  # background learning rate per frame where nothing moves
MOVING_RATE = 0.25  # of ALPHA, where something moves
_REDUCED = {1: cv2.IMREAD_GRAYSCALE, 2: cv2.IMREAD_REDUCED_GRAYSCALE_2,
            4: cv2.IMREAD_REDUCED_GRAYSCALE_4, 8: cv2.IMREAD_REDUCED_GRAYSCALE_8}
_MASK_SHIFT = 4  # fractional bits of the polygon corners given to fillPoly

Box = tuple[float, float, float, float]
Polygon = Sequence[tuple[float, float]]


@dataclass(frozen=True, slots=True)
class MotionResult:
    """Motion in one frame: boxes (x1, y1, x2, y2) in fractions [0, 1] of the frame."""

    boxes: tuple[Box, ...]
    changed: float  # fraction of the unmasked area that changed in this frame
    recalibrated: bool  # True when the background was reset (first frame, lighting jump, size change)


def reduction(width: int, height: int, target: int) -> tuple[int, tuple[int, int]]:
    """The DCT scaling factor for a width x height frame and the working size it decodes to.

    The factor is the largest of 8, 4, 2 that leaves at least 3/4 of `target` pixels of width (1 when
    the frame is that small already). Frames so large that 1/8 is still over 1.5 x `target` wide are
    brought down to `target` wide after the reduced decode.
    """
    factor = next((f for f in (8, 4, 2) if -(-width // f) * 4 >= target * 3), 1)
    size = (-(-width // factor), -(-height // factor))  # libjpeg rounds reduced sizes up
    if size[0] * 2 > target * 3:
        size = (target, max(1, round(height * target / width)))
    return factor, size


class _Scene:
    """The background and the working buffers of one working size, allocated once."""

    def __init__(self, size: tuple[int, int], masks: Sequence[Polygon], min_area: float):
        width, height = size
        shape = (height, width)
        self.size = size
        self.background = np.zeros(shape, np.float32)
        self.background8 = np.zeros(shape, np.uint8)
        self.masked = np.zeros(shape, np.uint8)
        self.blurred = np.zeros(shape, np.uint8)
        self.diff = np.zeros(shape, np.uint8)
        self.near = np.zeros(shape, np.uint8)
        self.changed = np.zeros(shape, np.uint8)
        self.dilated = np.zeros(shape, np.uint8)
        self.mask = _rasterize(masks, size) if masks else None
        self.counted = int(cv2.countNonZero(self.mask)) if self.mask is not None else width * height
        self.min_pixels = min_area * width * height


def _rasterize(masks: Sequence[Polygon], size: tuple[int, int]) -> np.ndarray:
    """255 where motion counts, 0 on the pixels whose centre is inside a mask polygon."""
    width, height = size
    mask = np.full((height, width), 255, np.uint8)
    scale = 1 << _MASK_SHIFT
    polygons = [np.round((np.asarray(p, np.float64) * (width, height) - 0.5) * scale).astype(np.int32)
                for p in masks]
    cv2.fillPoly(mask, polygons, 0, cv2.LINE_8, _MASK_SHIFT)
    return mask


class MotionDetector:
    """Motion of one camera's frames, fed in capture order from the camera's producer thread."""

    def __init__(self, *, threshold: int = 25, min_area: float = 0.0003, masks: Sequence[Polygon] = (),
                 lighting: float = 0.35, width: int = 192, alpha: float = ALPHA):
        if not 1 <= threshold <= 254:
            raise ValueError(f"motion threshold must be 1-254 (a difference on 0-255), not {threshold}")
        if not 0 <= min_area < 1:
            raise ValueError(f"motion min_area is a fraction of the frame in [0, 1), not {min_area}")
        if not 0 < lighting <= 1:
            raise ValueError(f"motion lighting is a fraction of the frame in (0, 1], not {lighting}")
        if width < 16:
            raise ValueError(f"motion working width must be at least 16 pixels, not {width}")
        if not 0 < alpha < 1:
            raise ValueError(f"motion alpha must be in (0, 1), not {alpha}")
        self.threshold = int(threshold)
        self.min_area = float(min_area)
        self.masks = tuple(tuple((float(x), float(y)) for x, y in p) for p in masks)
        self.lighting = float(lighting)
        self.width = int(width)
        self.alpha = float(alpha)
        self._frame_size: tuple[int, int] | None = None
        self._factor = 1
        self._scene: _Scene | None = None
        self._fresh = True  # the next frame resets the background
        self._buffers: dict[tuple[int, ...], np.ndarray] = {}

    def from_jpeg(self, data: bytes) -> MotionResult:
        """Motion in a JPEG frame, decoded at reduced scale (never in full).

        Raises JpegError when the bytes are not a decodable JPEG.
        """
        scene = self._scene_for(check_size(data))
        gray = cv2.imdecode(np.frombuffer(data, np.uint8), _REDUCED[self._factor])
        if gray is None or gray.size == 0:
            raise JpegError(f"undecodable JPEG ({len(data)} bytes)")
        return self._step(scene, self._shrink(gray, scene.size))

    def from_image(self, bgr: np.ndarray) -> MotionResult:
        """Motion in a decoded frame (BGR, or already grey)."""
        height, width = bgr.shape[:2]
        scene = self._scene_for((width, height))
        small = self._shrink(bgr, scene.size)
        if small.ndim == 3:
            small = cv2.cvtColor(small, cv2.COLOR_BGR2GRAY, dst=self._buffer(small.shape[:2]))
        return self._step(scene, small)

    def _scene_for(self, frame_size: tuple[int, int]) -> _Scene:
        """The scene of this frame size; a new one (to be recalibrated) when the size changed."""
        if frame_size != self._frame_size or self._scene is None:
            self._factor, size = reduction(*frame_size, self.width)
            self._frame_size = frame_size
            self._scene = _Scene(size, self.masks, self.min_area)
            self._buffers.clear()
            self._fresh = True
        return self._scene

    def _buffer(self, shape: tuple[int, ...]) -> np.ndarray:
        buffer = self._buffers.get(shape)
        if buffer is None:
            buffer = self._buffers[shape] = np.empty(shape, np.uint8)
        return buffer

    def _shrink(self, image: np.ndarray, size: tuple[int, int]) -> np.ndarray:
        """The image at the working size: exact halvings (2x2 means) while they fit, then INTER_AREA."""
        width, height = size
        while image.shape[1] >= 2 * width and image.shape[0] >= 2 * height:
            half = (-(-image.shape[1] // 2), -(-image.shape[0] // 2))
            image = cv2.resize(image, half, dst=self._buffer((half[1], half[0], *image.shape[2:])),
                               interpolation=cv2.INTER_LINEAR)
        if (image.shape[1], image.shape[0]) != size:
            image = cv2.resize(image, size, dst=self._buffer((height, width, *image.shape[2:])),
                               interpolation=cv2.INTER_AREA)
        return image

    def _step(self, scene: _Scene, gray: np.ndarray) -> MotionResult:
        """Compare the working image with the background, then let the background learn it."""
        src = gray
        if scene.mask is not None:
            src = cv2.bitwise_and(gray, scene.mask, dst=scene.masked)
        blurred = cv2.GaussianBlur(src, (3, 3), 0, dst=scene.blurred)
        if self._fresh:
            return self._recalibrate(scene, 0.0)
        diff = cv2.absdiff(blurred, cv2.convertScaleAbs(scene.background, dst=scene.background8), dst=scene.diff)
        self._remove_offset(scene)
        changed = cv2.threshold(diff, self.threshold, 255, cv2.THRESH_BINARY, dst=scene.changed)[1]
        if scene.mask is not None:
            cv2.bitwise_and(changed, scene.mask, dst=changed)
        fraction = cv2.countNonZero(changed) / scene.counted if scene.counted else 0.0
        if fraction > self.lighting:
            return self._recalibrate(scene, fraction)
        if not fraction:
            cv2.accumulateWeighted(blurred, scene.background, self.alpha)
            return MotionResult((), 0.0, False)
        moving = cv2.dilate(changed, None, dst=scene.dilated)
        if scene.mask is not None:
            cv2.bitwise_and(moving, scene.mask, dst=moving)  # dilation grows into masks
        boxes = self._boxes(scene, moving)
        # Learning the object where it moves would leave a trail of boxes behind it.
        cv2.accumulateWeighted(blurred, scene.background, self.alpha * MOVING_RATE, mask=moving)
        still = cv2.bitwise_not(moving, dst=scene.near)
        cv2.accumulateWeighted(blurred, scene.background, self.alpha, mask=still)
        return MotionResult(boxes, fraction, False)

    def _remove_offset(self, scene: _Scene) -> None:
        """Take a uniform brightness change (exposure, daylight) out of scene.diff.

        The offset is the mean change over the pixels that changed by at most twice the threshold: a
        moving object changes its pixels by more and does not bias it.
        """
        near = cv2.threshold(scene.diff, 2 * self.threshold, 255, cv2.THRESH_BINARY_INV, dst=scene.near)[1]
        if scene.mask is not None:
            cv2.bitwise_and(near, scene.mask, dst=near)
        if not cv2.countNonZero(near):
            return
        offset = cv2.mean(scene.blurred, near)[0] - cv2.mean(scene.background8, near)[0]
        if abs(offset) >= 1:
            shifted = cv2.add(scene.background8, round(offset), dst=scene.background8)
            cv2.absdiff(scene.blurred, shifted, dst=scene.diff)

    def _boxes(self, scene: _Scene, changed: np.ndarray) -> tuple[Box, ...]:
        """Bounding boxes, in frame fractions, of the changed blobs of at least min_area."""
        contours, _ = cv2.findContours(changed, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
        width, height = scene.size
        boxes = []
        for contour in contours:
            if cv2.contourArea(contour) < scene.min_pixels:
                continue
            x, y, w, h = cv2.boundingRect(contour)
            boxes.append((x / width, y / height, (x + w) / width, (y + h) / height))
        return tuple(boxes)

    def _recalibrate(self, scene: _Scene, fraction: float) -> MotionResult:
        """The frame becomes the background: no boxes for it."""
        scene.background[:] = scene.blurred
        self._fresh = False
        return MotionResult((), fraction, True)
