import pytest

from common import assets
from common.errors import AssetError


def test_bundled_assets_are_present_and_verified():
    # `make test` runs `make assets` first; this checks what it left in the cache.
    assert assets.is_valid(assets.MODEL)
    assert assets.is_valid(assets.LABELS)
    assert assets.is_valid(assets.SAMPLE) or assets.is_valid(assets.SAMPLE_FALLBACK)


def test_checksum_mismatch_is_an_error(tmp_path, monkeypatch):
    monkeypatch.setenv("FRAMECAST_CACHE_DIR", str(tmp_path / "cache"))
    bogus = tmp_path / "bogus.tflite"
    bogus.write_bytes(b"not the model")
    with pytest.raises(AssetError, match="sha256 mismatch"):
        assets._install(assets.MODEL, bogus)
    assert not assets.asset_path(assets.MODEL).exists()


def test_missing_assets_say_how_to_fetch(tmp_path, monkeypatch):
    monkeypatch.setenv("FRAMECAST_CACHE_DIR", str(tmp_path / "empty"))
    for getter in (assets.model_path, assets.labels_path, assets.sample_path):
        with pytest.raises(AssetError, match="make assets"):
            getter()
