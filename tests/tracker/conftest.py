import pytest

from tests.tracker.mosquitto import Mosquitto


@pytest.fixture
def mosquitto():
    """A mosquitto broker of this test's own (tests stop and restart it)."""
    broker = Mosquitto().start()
    yield broker
    broker.cleanup()
