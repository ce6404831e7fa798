"""encoder/i420.py: JPEGs decoded straight to I420 planes give the picture the BGR path gives, and
through the encoder they come back from PyAV in the right colours (a range or plane-order mistake
shows there), for 4:2:0 JPEGs (the fast path) and the others (the BGR fallback)."""

from __future__ import annotations

import io

import av
import cv2
import numpy as np
import pytest

from common import jpeg
from encoder import i420
from encoder.fmp4 import Fragmenter

T0 = 1_750_000_000_000_000_000

# BGR patches: the three primaries, white, black, two greys (a full/limited range slip moves these).
PATCHES = [(0, 0, 255), (0, 255, 0), (255, 0, 0), (255, 255, 255), (0, 0, 0), (128, 128, 128), (64, 64, 64)]


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))
    return float("inf") if mse == 0 else 10 * np.log10(255.0 ** 2 / mse)


def patches(width: int = 448, height: int = 128) -> np.ndarray:
    """A row of flat 64x64 colour patches over a gradient band (detail for the codec)."""
    image = np.zeros((height, width, 3), np.uint8)
    for k, colour in enumerate(PATCHES):
        image[:64, k * 64:(k + 1) * 64] = colour
    image[64:] = np.linspace(0, 255, width, dtype=np.uint8)[None, :, None]
    return image


def through_h264(pictures: list[np.ndarray]) -> list[np.ndarray]:
    """The pictures encoded as the encoder service does and decoded back to BGR by PyAV."""
    fragmenter = Fragmenter(1, preset="superfast", crf=20)
    init, data = None, b""
    for i, picture in enumerate(pictures):
        first, fragment = fragmenter.add_i420(picture, T0 + i * 100_000_000)
        init = init or first
        data += fragment.data
    fragmenter.close()
    with av.open(io.BytesIO(init.data + data), format="mp4") as container:
        return [frame.to_ndarray(format="bgr24") for frame in container.decode(video=0)]


def test_the_library_is_there():
    assert i420.FAST, "libturbojpeg not found: install Debian's libturbojpeg0 (deploy/system-deps.sh does)"


def test_a_jpeg_decodes_to_the_planes_the_bgr_path_gives():
    image = patches()
    data = jpeg.encode(image, 90)  # OpenCV writes 4:2:0: the fast path
    picture = i420.from_jpeg(data)
    reference = i420.from_bgr(jpeg.decode(data))
    assert picture.shape == reference.shape == (128 * 3 // 2, 448) and picture.dtype == np.uint8
    assert i420.size(picture) == (448, 128)
    luma, chroma = slice(0, 128), slice(128, None)
    assert psnr(picture[luma], reference[luma]) > 45  # the same samples, but for rounding
    assert psnr(picture[chroma], reference[chroma]) > 35  # the JPEG's own chroma vs BGR's resampled
    assert 16 <= picture[luma].min() and picture[luma].max() <= 235  # limited range
    assert 16 <= picture[chroma].min() and picture[chroma].max() <= 240


def test_the_patches_come_back_from_h264_in_their_colours():
    image = patches()
    data = jpeg.encode(image, 90)
    shown, through_bgr = (through_h264([picture] * 3)[-1]
                          for picture in (i420.from_jpeg(data), i420.from_bgr(jpeg.decode(data))))
    # vs the JPEG as an MJPEG viewer shows it: the edges between saturated patches bound this (PyAV
    # and OpenCV upsample chroma differently), and the BGR path's picture scores the same
    assert psnr(shown, jpeg.decode(data)) > 33
    assert psnr(shown, jpeg.decode(data)) > psnr(through_bgr, jpeg.decode(data)) - 0.5
    assert psnr(shown, image) > 40  # the JPEG's own chroma goes through untouched
    for k, colour in enumerate(PATCHES):
        centre = shown[16:48, k * 64 + 16:k * 64 + 48].reshape(-1, 3).mean(axis=0)
        assert np.abs(centre - colour).max() < 5, (colour, centre.round())  # full range: 64 -> 56


@pytest.mark.parametrize("kind", ["4:4:4", "grey", "odd size", "part MCUs"])
def test_other_jpegs_give_the_same_picture(kind):
    image = patches()
    if kind == "4:4:4":  # not 4:2:0: through BGR
        ok, buf = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, 90,
                                               cv2.IMWRITE_JPEG_SAMPLING_FACTOR, cv2.IMWRITE_JPEG_SAMPLING_FACTOR_444])
        data = buf.tobytes()
    elif kind == "grey":
        ok, buf = cv2.imencode(".jpg", cv2.cvtColor(image, cv2.COLOR_BGR2GRAY), [cv2.IMWRITE_JPEG_QUALITY, 90])
        data = buf.tobytes()
    elif kind == "odd size":  # 4:2:0 of 447x127: decoded aside, the last row and column dropped
        data = jpeg.encode(image[:127, :447], 90)
    else:  # 4:2:0 of 442x122, not whole 16x16 MCUs: straight into the picture's planes
        data = jpeg.encode(image[:122, :442], 90)
    picture = i420.from_jpeg(data)
    reference = i420.from_bgr(jpeg.decode(data))
    assert picture.shape == reference.shape
    assert i420.size(picture) == {"odd size": (446, 126), "part MCUs": (442, 122)}.get(kind, (448, 128))
    assert psnr(picture, reference) > 35
    shown = through_h264([picture] * 2)[-1]
    assert psnr(shown, jpeg.decode(data)[:shown.shape[0], :shown.shape[1]]) > 33


@pytest.mark.parametrize("data", [b"", b"not a jpeg", jpeg.encode(patches(), 80)[:300]])
def test_what_is_not_a_decodable_jpeg_raises_our_error(data):
    with pytest.raises(jpeg.JpegError):
        i420.from_jpeg(data)


def test_a_header_over_the_pixel_cap_is_refused_before_decoding():
    with pytest.raises(jpeg.JpegError, match="exceeds"):
        i420.from_jpeg(jpeg.encode(patches(), 80), max_pixels=1000)


def test_without_the_library_jpegs_go_through_bgr(monkeypatch):
    data = jpeg.encode(patches(), 90)
    monkeypatch.setattr(i420, "FAST", False)
    assert np.array_equal(i420.from_jpeg(data), i420.from_bgr(jpeg.decode(data)))
