import asyncio
import threading

import numpy as np
import pytest

from service.inference.batcher import MicroBatcher, QueueFull
from service.inference.predictor import Prediction


def fake_prediction(digit: np.ndarray, samples: int | None) -> Prediction:
    value = int(digit[0, 0])
    return Prediction(digit=value, probabilities=[0.1] * 10, entropy=float(value), expected_entropy=0.0,
                      mutual_information=0.0, refer=False, refer_reason=None, candidates=[value], threshold=1.0,
                      samples=samples or 100, model_version="test")


class Recorder:
    def __init__(self, gate: threading.Event | None = None, fail_on: int | None = None):
        self.calls: list[tuple[int, int | None]] = []
        self.gate, self.fail_on = gate, fail_on
        self.entered = threading.Event()  # set when a pass has started

    def __call__(self, digits, samples):
        self.entered.set()
        if self.gate is not None:
            self.gate.wait(5)
        self.calls.append((len(digits), samples))
        if self.fail_on is not None and any(int(d[0, 0]) == self.fail_on for d in digits):
            raise RuntimeError("boom")
        return [fake_prediction(d, samples) for d in digits]


async def until(condition, timeout: float = 5.0) -> None:
    """Poll ``condition`` on the event loop until it holds, failing after ``timeout`` seconds."""
    deadline = asyncio.get_running_loop().time() + timeout
    while not condition():
        assert asyncio.get_running_loop().time() < deadline, "condition not reached in time"
        await asyncio.sleep(0.001)


def digit(value: int) -> np.ndarray:
    return np.full((28, 28), value, dtype=np.uint8)


@pytest.mark.parametrize("threaded", [False, True])
def test_concurrent_requests_share_one_pass_and_get_their_own_answers(threaded):
    recorder = Recorder()

    async def scenario():
        batcher = MicroBatcher(recorder, max_images=64, max_wait_s=0.05, threaded=threaded)
        batcher.start()
        answers = await asyncio.gather(*(batcher.submit([digit(v), digit(v + 100)], None) for v in range(5)))
        await batcher.stop()
        return answers, batcher.batches_run

    answers, passes = asyncio.run(scenario())
    assert passes == 1 and recorder.calls == [(10, None)]
    assert [[p.digit for p in answer] for answer in answers] == [[v, v + 100] for v in range(5)]


@pytest.mark.parametrize("threaded", [False, True])
def test_different_sample_counts_run_separately(threaded):
    recorder = Recorder()

    async def scenario():
        batcher = MicroBatcher(recorder, max_images=64, max_wait_s=0.05, threaded=threaded)
        batcher.start()
        answers = await asyncio.gather(batcher.submit([digit(1)], 10), batcher.submit([digit(2)], 20),
                                       batcher.submit([digit(3)], 10))
        await batcher.stop()
        return answers

    answers = asyncio.run(scenario())
    assert sorted(recorder.calls) == [(1, 20), (2, 10)]
    assert [a[0].samples for a in answers] == [10, 20, 10]
    assert [a[0].digit for a in answers] == [1, 2, 3]


@pytest.mark.parametrize("threaded", [False, True])
def test_max_images_caps_a_pass(threaded):
    recorder = Recorder()

    async def scenario():
        batcher = MicroBatcher(recorder, max_images=4, max_wait_s=0.05, threaded=threaded)
        batcher.start()
        await asyncio.gather(*(batcher.submit([digit(v)], None) for v in range(10)))
        await batcher.stop()

    asyncio.run(scenario())
    assert sum(n for n, _ in recorder.calls) == 10
    assert max(n for n, _ in recorder.calls) <= 4


def test_full_queue_sheds_instead_of_growing():
    gate = threading.Event()
    recorder = Recorder(gate)

    async def scenario():
        batcher = MicroBatcher(recorder, max_images=1, max_wait_s=0.0, max_queue=2, threaded=True)  # the gate blocks
        batcher.start()
        first = asyncio.ensure_future(batcher.submit([digit(1)], None))
        await until(recorder.entered.is_set)  # the worker has taken it and is blocked in the pass
        waiting = [asyncio.ensure_future(batcher.submit([digit(v)], None)) for v in (2, 3)]
        await until(lambda: batcher._queue.qsize() == 2)
        with pytest.raises(QueueFull, match="2 requests already waiting"):
            await batcher.submit([digit(4)], None)
        gate.set()
        results = await asyncio.gather(first, *waiting)
        await batcher.stop()
        return results

    results = asyncio.run(scenario())
    assert [r[0].digit for r in results] == [1, 2, 3]


@pytest.mark.parametrize("threaded", [False, True])
def test_a_failing_pass_fails_its_requests_and_the_worker_survives(threaded):
    recorder = Recorder(fail_on=13)

    async def scenario():
        batcher = MicroBatcher(recorder, max_images=1, max_wait_s=0.0, threaded=threaded)
        batcher.start()
        with pytest.raises(RuntimeError, match="boom"):
            await batcher.submit([digit(13)], None)
        after = await batcher.submit([digit(5)], None)
        await batcher.stop()
        return after

    assert asyncio.run(scenario())[0].digit == 5


@pytest.mark.parametrize("threaded", [False, True])
def test_a_lone_request_does_not_wait_for_the_window(threaded):
    recorder = Recorder()

    async def scenario():
        batcher = MicroBatcher(recorder, max_images=64, max_wait_s=30.0, threaded=threaded)
        batcher.start()
        started = asyncio.get_running_loop().time()
        await batcher.submit([digit(1)], None)
        elapsed = asyncio.get_running_loop().time() - started
        await batcher.stop()
        return elapsed

    assert asyncio.run(scenario()) < 10.0  # far below the 30 s window, however busy the machine


@pytest.mark.parametrize("threaded", [False, True])
def test_requests_a_few_loop_turns_behind_share_the_pass(threaded):
    """A burst parsed in one turn of the event loop reaches the queue over the next few turns."""
    recorder = Recorder()

    async def scenario():
        batcher = MicroBatcher(recorder, max_images=64, max_wait_s=1.0, threaded=threaded)
        batcher.start()

        async def request(value: int, turns: int):
            for _ in range(turns):  # reading and parsing its body
                await asyncio.sleep(0)
            return await batcher.submit([digit(value)], None)

        answers = await asyncio.gather(*(request(v, turns) for v, turns in enumerate((0, 1, 2, 3))))
        await batcher.stop()
        return answers

    answers = asyncio.run(scenario())
    assert recorder.calls == [(4, None)]  # one pass for all four
    assert [a[0].digit for a in answers] == [0, 1, 2, 3]


@pytest.mark.parametrize("threaded", [False, True])
def test_a_request_arriving_after_a_quiet_turn_gets_its_own_pass(threaded):
    recorder = Recorder()

    async def scenario():
        batcher = MicroBatcher(recorder, max_images=64, max_wait_s=1.0, threaded=threaded)
        batcher.start()
        first = await batcher.submit([digit(1)], None)
        second = await batcher.submit([digit(2)], None)
        await batcher.stop()
        return first, second

    asyncio.run(scenario())
    assert recorder.calls == [(1, None), (1, None)]
