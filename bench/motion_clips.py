"""The motion benchmark's clips (#21), made deterministically from the sample clip (vtest.avi).

- `idle`: the sample clip's scene without its walkers (the per-pixel median of many of its frames),
  with gaussian sensor noise on every frame and a slow sinusoidal brightness drift; no object.
- `passing`: the same scene, mostly idle, with a person walking across now and then: walkers cut
  from the sample clip (the difference from the median plate, cleaned, tracked over their frames so
  the legs move) pasted at their own height in the scene and moved from one edge to the other.
- `small`: one of those walkers scaled down to a distant person, walking slowly across the plate.
- `busy`: the sample clip itself (`busy()`).

Each clip is an MJPEG AVI of libjpeg quality-80 JPEGs (`common.jpeg.encode`, what the producer
writes) muxed unchanged, so a passthrough producer forwards exactly these bytes; OpenCV's own MJPEG
writer at "quality 80" writes twice the bytes of libjpeg's 80 and FFmpeg's ignores the setting. Beside
each clip, `<name>.json` is its ground truth: every object's label, first and last frame, seconds and
box per frame. They live under `<cache>/bench-motion/<key>/`, `key` hashing the parameters, the
generator version and the sample clip's pin, so a changed generator builds a new set and an unchanged
one is reused.

    python -m bench.motion_clips [--quick]    # build (or find) the clips and print where they are
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import os
import shutil
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from fractions import Fraction
from pathlib import Path

import av
import cv2
import numpy as np

from common import assets, jpeg
from common.errors import AssetError

GENERATOR = 1  # bump when the code changes what it writes for the same parameters
CLIPS = ("idle", "passing", "small")
FOREGROUND_LEVEL = 30  # difference from the plate (any channel) that marks a walker's pixel
NOISE_BANK = 8  # noise fields drawn once; each frame takes one at a random offset
PAD = 4  # pixels of the sample frame kept around a walker's mask (the feathered edge)


@dataclass(frozen=True)
class ClipParams:
    """Everything the clips depend on besides the sample clip; its hash names the cache entry."""

    fps: float = 10.0
    quality: int = 80
    noise_sigma: float = 3.0
    drift_levels: float = 10.0  # brightness amplitude, levels (0-255)
    drift_period_s: float = 60.0
    plate_frames: int = 99  # sample frames whose per-pixel median is the empty scene
    idle_s: float = 60.0
    passing_s: float = 120.0
    passes: int = 5
    pass_s: float = 6.0  # each pass takes about this long from edge to edge
    small_s: float = 30.0
    small_height: int = 32  # the distant person's height, pixels
    small_speed: float = 0.5  # heights per second: a slow walk
    seed: int = 21

    def key(self) -> str:
        text = json.dumps({"generator": GENERATOR, "sample": assets.SAMPLE.sha256, **asdict(self)}, sort_keys=True)
        return hashlib.sha256(text.encode()).hexdigest()[:16]


QUICK = ClipParams(idle_s=10.0, passing_s=24.0, passes=2, small_s=10.0)


@dataclass(frozen=True)
class Clip:
    """One built clip: its AVI and its ground truth (the parsed `<name>.json`)."""

    name: str
    path: Path
    truth: dict

    @property
    def frames(self) -> int:
        return self.truth["frames"]

    @property
    def fps(self) -> float:
        return self.truth["fps"]


@dataclass(frozen=True)
class Sprite:
    """A walker in one sample frame: its pixels, a feathered alpha, and its mask's tight box in the crop."""

    image: np.ndarray
    alpha: np.ndarray  # float32 HxWx1 in [0, 1]
    box: tuple[int, int, int, int]

    def scaled(self, factor: float) -> Sprite:
        height, width = self.image.shape[:2]
        size = (max(1, round(width * factor)), max(1, round(height * factor)))
        image = cv2.resize(self.image, size, interpolation=cv2.INTER_AREA)
        alpha = cv2.resize(self.alpha, size, interpolation=cv2.INTER_AREA)[..., None]
        x1, y1, x2, y2 = self.box
        return Sprite(image, alpha, (math.floor(x1 * factor), math.floor(y1 * factor),
                                     math.ceil(x2 * factor), math.ceil(y2 * factor)))

    def flipped(self) -> Sprite:
        width = self.image.shape[1]
        x1, y1, x2, y2 = self.box
        return Sprite(self.image[:, ::-1].copy(), self.alpha[:, ::-1].copy(), (width - x2, y1, width - x1, y2))


@dataclass(frozen=True)
class Walker:
    """One person tracked over consecutive sample frames, alone (not merged with anyone)."""

    sprites: list[Sprite]
    foot_y: float  # where the feet were: the scene's perspective gives this height there
    height: float
    direction: int  # +1 when it walked to the right in the sample

    def sprite(self, index: int, direction: int) -> Sprite:
        """The walk cycle played forwards and backwards, facing `direction`."""
        cycle = len(self.sprites) * 2 - 2
        step = index % cycle
        sprite = self.sprites[step if step < len(self.sprites) else cycle - step]
        return sprite if direction == self.direction else sprite.flipped()


def busy() -> Path:
    """The busy scene: the sample clip itself."""
    return sample()


def sample() -> Path:
    path = assets.fetch_sample()
    if path.name != assets.SAMPLE.name:
        raise AssetError(f"the motion clips are made from {assets.SAMPLE.name} (Debian's {assets.SAMPLE_DEB}); "
                         f"only {path.name} is cached: install apt-get and run `make assets`")
    return path


def build(params: ClipParams = ClipParams(), root: Path | None = None) -> dict[str, Clip]:  # noqa: B008 - frozen
    """The clips for `params`, built under `root` (default `<cache>/bench-motion`) unless already there.

    A set is built in a temporary directory and renamed into place whole, so a reader never sees half
    of one and two builders racing both end with the same files."""
    root = Path(root) if root else assets.cache_dir() / "bench-motion"
    final = root / params.key()
    if not (final / "manifest.json").is_file():
        root.mkdir(parents=True, exist_ok=True)
        work = Path(tempfile.mkdtemp(prefix=f".{params.key()}-", dir=root))
        try:
            _build_into(work, params)
            work.chmod(0o755)  # mkdtemp's 0700 would keep the set from anyone sharing the cache
            try:
                os.rename(work, final)
            except OSError:  # another builder finished first: its set is the same
                if not (final / "manifest.json").is_file():
                    raise
        finally:
            shutil.rmtree(work, ignore_errors=True)
    return {name: Clip(name, final / f"{name}.avi", json.loads((final / f"{name}.json").read_text()))
            for name in CLIPS}


def read_jpegs(path: Path) -> Iterator[bytes]:
    """The clip's JPEGs as stored (no decode), the way a passthrough producer reads an MJPEG file."""
    cap = cv2.VideoCapture(str(path), cv2.CAP_FFMPEG)
    try:
        if not cap.set(cv2.CAP_PROP_FORMAT, -1):
            raise AssetError(f"{path}: FFmpeg will not hand over its raw MJPEG packets")
        while True:
            ok, packet = cap.read()
            if not ok:
                return
            yield packet.tobytes()
    finally:
        cap.release()


def read_images(path: Path) -> Iterator[np.ndarray]:
    """The clip's frames, decoded (BGR)."""
    cap = cv2.VideoCapture(str(path))
    try:
        while True:
            ok, image = cap.read()
            if not ok:
                return
            yield image
    finally:
        cap.release()


# -- building ------------------------------------------------------------------------------------


def _build_into(work: Path, params: ClipParams) -> None:
    frames = list(read_images(sample()))
    plate = _plate(frames, params.plate_frames)
    walkers = _walkers(frames, plate)
    if len(walkers) < 2:
        raise AssetError(f"found {len(walkers)} lone walkers in the sample clip; the generator needs 2")
    cv2.imwrite(str(work / "plate.png"), plate)
    rng = np.random.default_rng(params.seed)
    noise = _Noise(plate.shape, params.noise_sigma, rng)
    scenes = {"idle": (params.idle_s, []),
              "passing": (params.passing_s, _passes(params, walkers, plate.shape, rng)),
              "small": (params.small_s, [_small_walk(params, walkers, plate.shape)])}
    for name, (seconds, objects) in scenes.items():
        truth = _write(work / f"{name}.avi", plate, objects, round(seconds * params.fps), params, noise)
        truth.update(name=name, key=params.key(), generator=GENERATOR, params=asdict(params))
        (work / f"{name}.json").write_text(json.dumps(truth))
    (work / "manifest.json").write_text(json.dumps({"key": params.key(), "clips": list(CLIPS),
                                                    "params": asdict(params), "generator": GENERATOR}))


def _plate(frames: list[np.ndarray], count: int) -> np.ndarray:
    """The empty scene: the per-pixel median of `count` frames spread over the clip (walkers move on)."""
    picked = np.stack([frames[round(i * (len(frames) - 1) / max(1, count - 1))] for i in range(count)])
    return np.partition(picked, count // 2, axis=0)[count // 2]


def foreground(image: np.ndarray, plate: np.ndarray) -> np.ndarray:
    """Where `image` differs from the plate by more than noise, opened (specks) and closed (holes); uint8 0/255."""
    blue, green, red = cv2.split(cv2.absdiff(image, plate))
    _, mask = cv2.threshold(cv2.max(cv2.max(blue, green), red), FOREGROUND_LEVEL, 255, cv2.THRESH_BINARY)
    mask = cv2.morphologyEx(mask, cv2.MORPH_OPEN, np.ones((3, 3), np.uint8))
    return cv2.morphologyEx(mask, cv2.MORPH_CLOSE, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (9, 9)))


def _lone_people(image: np.ndarray, plate: np.ndarray) -> list[tuple[tuple[int, int, int, int], np.ndarray]]:
    """Blobs shaped like one upright person away from the border: (box, its mask in the box)."""
    height, width = plate.shape[:2]
    count, labels, stats, _ = cv2.connectedComponentsWithStats(foreground(image, plate))
    found = []
    for index in range(1, count):
        x, y, w, h, area = (int(v) for v in stats[index])
        if area < 500 or not 50 <= h <= 180 or h < 1.8 * w or area < 0.35 * w * h:
            continue
        if x < PAD or y < PAD or x + w > width - PAD or y + h > height - PAD:
            continue
        found.append(((x, y, x + w, y + h), labels[y:y + h, x:x + w] == index))
    return found


def iou(a: tuple, b: tuple) -> float:
    """Intersection over union of two (x1, y1, x2, y2) boxes."""
    w = min(a[2], b[2]) - max(a[0], b[0])
    h = min(a[3], b[3]) - max(a[1], b[1])
    if w <= 0 or h <= 0:
        return 0.0
    inter = w * h
    return inter / ((a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter)


def _walkers(frames: list[np.ndarray], plate: np.ndarray, min_frames: int = 16, keep: int = 12,
             most_frames: int = 24) -> list[Walker]:
    """People tracked alone over at least `min_frames` consecutive frames (one-to-one box overlap from
    frame to frame; a merge, a split or a gap ends a track), longest first."""
    open_tracks: list[list] = []
    done: list[list] = []
    for index, image in enumerate(frames):
        blobs = _lone_people(image, plate)
        claims: dict[int, list[int]] = {}
        for t, track in enumerate(open_tracks):
            matches = [b for b, (box, _) in enumerate(blobs) if iou(track[-1][1], box) >= 0.3]
            if len(matches) == 1:
                claims.setdefault(matches[0], []).append(t)
        extended, still_open = set(), []
        for b, tracks in claims.items():
            if len(tracks) == 1:
                open_tracks[tracks[0]].append((index, *blobs[b]))
                extended.add(tracks[0])
                still_open.append(open_tracks[tracks[0]])
        done.extend(track for t, track in enumerate(open_tracks) if t not in extended)
        claimed = {b for b, tracks in claims.items() if len(tracks) == 1}
        open_tracks = still_open + [[(index, *blob)] for b, blob in enumerate(blobs) if b not in claimed]
    done.extend(open_tracks)
    walkers = []
    for track in sorted(done, key=lambda t: (-len(t), t[0][0])):
        heights = [box[3] - box[1] for _, box, _ in track]
        if len(track) < min_frames or max(heights) > 1.3 * min(heights):
            continue
        track = track[:most_frames]
        sprites = [_sprite(frames[i], box, mask) for i, box, mask in track]
        first, last = track[0][1], track[-1][1]
        walkers.append(Walker(sprites, float(np.median([box[3] for _, box, _ in track])),
                              float(np.median(heights)), 1 if last[0] + last[2] >= first[0] + first[2] else -1))
        if len(walkers) == keep:
            break
    return walkers


def _sprite(image: np.ndarray, box: tuple[int, int, int, int], mask: np.ndarray) -> Sprite:
    x1, y1, x2, y2 = box
    full = np.zeros(image.shape[:2], np.uint8)
    full[y1:y2, x1:x2][mask] = 255
    cx1, cy1, cx2, cy2 = x1 - PAD, y1 - PAD, x2 + PAD, y2 + PAD
    alpha = cv2.dilate(full[cy1:cy2, cx1:cx2], np.ones((3, 3), np.uint8))
    alpha = cv2.GaussianBlur(alpha, (5, 5), 0).astype(np.float32)[..., None] / 255.0
    return Sprite(image[cy1:cy2, cx1:cx2].copy(), alpha, (PAD, PAD, PAD + x2 - x1, PAD + y2 - y1))


@dataclass(frozen=True)
class _Object:
    """Something moving through a clip: per frame index, the sprite and where its crop's corner goes."""

    label: str
    placements: dict[int, tuple[Sprite, int, int]]


def _passes(params: ClipParams, walkers: list[Walker], shape: tuple, rng: np.random.Generator) -> list[_Object]:
    """`params.passes` walks from edge to edge, one in each equal slot of the clip at a random moment."""
    height, width = shape[:2]
    slot = params.passing_s / max(1, params.passes)
    if params.passes and slot < params.pass_s + 2:
        raise ValueError(f"{params.passes} passes of {params.pass_s} s need more than {params.passing_s} s")
    objects = []
    for i in range(params.passes):
        walker = walkers[i % len(walkers)]
        direction = 1 if i % 2 == 0 else -1
        start = i * slot + rng.uniform(0.25, 0.75) * (slot - params.pass_s)
        foot = min(height - 2, walker.foot_y + rng.uniform(-15, 15))
        span = width + 2 * walker.sprites[0].image.shape[1]
        frames = round(params.pass_s * params.fps)
        first = round(start * params.fps)
        placements = {}
        for k in range(frames):
            sprite = walker.sprite(k, direction)
            centre = -span / 2 + width / 2 + (k / (frames - 1)) * span
            if direction < 0:
                centre = width - centre
            placements[first + k] = _placed(sprite, centre, foot)
        objects.append(_Object("person", placements))
    return objects


def _small_walk(params: ClipParams, walkers: list[Walker], shape: tuple) -> _Object:
    """The tallest walker scaled to `small_height`, walking to the right on the far road."""
    height, width = shape[:2]
    walker = max(walkers, key=lambda w: w.height)
    factor = params.small_height / walker.height
    small = Walker([s.scaled(factor) for s in walker.sprites], walker.foot_y, params.small_height, walker.direction)
    frames = round(params.small_s * params.fps)
    speed = params.small_speed * params.small_height / params.fps  # pixels a frame
    start, foot = 0.12 * width, 0.33 * height
    return _Object("person", {k: _placed(small.sprite(k, 1), start + k * speed, foot) for k in range(frames)})


def _placed(sprite: Sprite, centre_x: float, foot_y: float) -> tuple[Sprite, int, int]:
    """The sprite with its mask's bottom centre at (centre_x, foot_y): (sprite, crop left, crop top)."""
    x1, _, x2, y2 = sprite.box
    return sprite, round(centre_x - (x1 + x2) / 2), round(foot_y - y2)


class _Noise:
    """Gaussian sensor noise for each frame: one of a few fields drawn once, at a random offset (a
    fresh field a frame would cost more than the frame's encode)."""

    MARGIN = 32

    def __init__(self, shape: tuple, sigma: float, rng: np.random.Generator):
        height, width, channels = shape
        self.rng = rng
        self.shape = shape
        self.bank = np.rint(rng.normal(0.0, sigma, (NOISE_BANK, height + self.MARGIN, width + self.MARGIN,
                                                    channels))).astype(np.int16)

    def next(self) -> np.ndarray:
        k, dy, dx = (int(v) for v in self.rng.integers(0, (NOISE_BANK, self.MARGIN, self.MARGIN)))
        return self.bank[k, dy:dy + self.shape[0], dx:dx + self.shape[1]]


def _write(path: Path, plate: np.ndarray, objects: list[_Object], frames: int, params: ClipParams,
           noise: _Noise) -> dict:
    """Render and write one clip; its ground truth (objects' frames and boxes) as a dict."""
    height, width = plate.shape[:2]
    boxes: list[dict[int, list[int]]] = [{} for _ in objects]
    with av.open(str(path), "w", format="avi") as container:
        rate = Fraction(params.fps).limit_denominator(1000)
        stream = container.add_stream("mjpeg", rate=rate)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuvj420p"
        time_base = 1 / rate
        for index in range(frames):
            image = plate.copy()
            for n, obj in enumerate(objects):
                placed = obj.placements.get(index)
                if placed is not None and (box := _paste(image, *placed)) is not None:
                    boxes[n][index] = box
            drift = params.drift_levels * math.sin(2 * math.pi * index / params.fps / params.drift_period_s)
            lit = image.astype(np.int16) + noise.next()
            lit += round(drift)
            packet = av.Packet(jpeg.encode(np.clip(lit, 0, 255).astype(np.uint8), params.quality))
            packet.stream, packet.pts, packet.dts, packet.time_base = stream, index, index, time_base
            packet.is_keyframe = True
            container.mux(packet)
    truth_objects = []
    for obj, seen in zip(objects, boxes, strict=True):
        if not seen:
            continue
        first, last = min(seen), max(seen)
        truth_objects.append({"label": obj.label, "first_frame": first, "last_frame": last,
                              "start_s": first / params.fps, "end_s": (last + 1) / params.fps,
                              "boxes": {str(k): v for k, v in sorted(seen.items())}})
    return {"fps": params.fps, "width": width, "height": height, "frames": frames, "seconds": frames / params.fps,
            "objects": truth_objects}


def _paste(image: np.ndarray, sprite: Sprite, left: int, top: int) -> list[int] | None:
    """Blend the sprite into `image` with its crop's corner at (left, top); its mask's box in the
    image, clipped, or None when none of it is inside."""
    height, width = image.shape[:2]
    h, w = sprite.image.shape[:2]
    x0, y0, x1, y1 = max(0, left), max(0, top), min(width, left + w), min(height, top + h)
    if x0 >= x1 or y0 >= y1:
        return None
    sx, sy = x0 - left, y0 - top
    alpha = sprite.alpha[sy:sy + y1 - y0, sx:sx + x1 - x0]
    region = image[y0:y1, x0:x1].astype(np.float32)
    blended = region * (1 - alpha) + sprite.image[sy:sy + y1 - y0, sx:sx + x1 - x0] * alpha
    image[y0:y1, x0:x1] = np.rint(blended).astype(np.uint8)
    bx1, by1, bx2, by2 = sprite.box
    box = [max(0, left + bx1), max(0, top + by1), min(width, left + bx2), min(height, top + by2)]
    return box if box[0] < box[2] and box[1] < box[3] else None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.motion_clips", description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="the short clips of `python -m bench --quick`")
    args = parser.parse_args(argv)
    for clip in build(QUICK if args.quick else ClipParams()).values():
        print(f"{clip.name:<8} {clip.frames:>5} frames  {len(clip.truth['objects'])} objects  {clip.path}")
    print(f"{'busy':<8} {'':>5}                    {busy()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
