"""`Interrupt`: a signal during `framecast process` is recorded wherever the main thread is (a lock held,
a `__del__` running) and ends the run at the next check: before a frame is written or the outputs put
in place."""

import signal
import threading

import pytest

from worker.offline.interrupt import Interrupt, Interrupted


class SignalInFinalizer:
    """Raises `signum` in this process from its `__del__`: the handler runs there, where Python would
    report and drop an exception it raised ("Exception ignored in ...")."""

    def __init__(self, signum: int):
        self.signum = signum

    def __del__(self):
        signal.raise_signal(self.signum)  # the Python handler runs before raise_signal returns


def test_a_signal_is_recorded_and_raised_only_at_a_check():
    """The handler never raises: the main thread may be holding a lock or running a finalizer."""
    with Interrupt() as interrupt:
        signal.raise_signal(signal.SIGTERM)  # returns: nothing is raised here
        assert interrupt.signum == signal.SIGTERM
        with pytest.raises(Interrupted) as raised:
            interrupt.check()
        assert raised.value.signum == signal.SIGTERM


def test_a_signal_inside_a_finalizer_is_recorded_too():
    with Interrupt() as interrupt:
        SignalInFinalizer(signal.SIGINT)  # dropped at once: its __del__ runs
        with pytest.raises(Interrupted) as raised:
            interrupt.check()
        assert raised.value.signum == signal.SIGINT


def test_the_first_signal_is_the_one_recorded():
    with Interrupt() as interrupt:
        signal.raise_signal(signal.SIGINT)
        signal.raise_signal(signal.SIGTERM)
        assert interrupt.signum == signal.SIGINT


def test_without_a_signal_check_passes():
    with Interrupt() as interrupt:
        interrupt.check()
    assert interrupt.signum is None


def test_the_previous_handlers_are_back_after_the_block():
    before = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}
    with Interrupt():
        assert signal.getsignal(signal.SIGTERM) != before[signal.SIGTERM]
    assert {sig: signal.getsignal(sig) for sig in before} == before


def test_off_the_main_thread_the_handlers_are_left_alone():
    before = signal.getsignal(signal.SIGTERM)
    seen = []

    def run():
        with Interrupt() as interrupt:
            seen.append(signal.getsignal(signal.SIGTERM))
            interrupt.check()  # nothing arrived: no exception

    thread = threading.Thread(target=run)
    thread.start()
    thread.join()
    assert seen == [before]


def test_guarded_writers_check_before_each_frame_and_before_finishing():
    class Writer:
        def __init__(self):
            self.frames, self.finished, self.aborted = 0, False, False

        def write(self, image):
            self.frames += 1

        def release(self):
            self.finished = True

        def abort(self):
            self.aborted = True

    made = []
    with Interrupt() as interrupt:
        factory = interrupt.guarded(lambda w, h: made.append(Writer()) or made[-1])
        writer = factory(4, 4)
        writer.write("frame")
        signal.raise_signal(signal.SIGTERM)
        with pytest.raises(Interrupted):
            writer.write("frame")
        with pytest.raises(Interrupted):
            writer.release()  # and throws the file away instead
    assert (made[0].frames, made[0].finished, made[0].aborted) == (1, False, True)
