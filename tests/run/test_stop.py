"""A stop requested by a signal: the handler never waits for a lock the main thread holds.

``threading.Event.set`` takes the event's lock. A signal handler runs in the main thread
between two bytecodes, so a SIGTERM that lands while the main thread is inside
``Event.wait`` (which holds that lock around its checks) deadlocks the process: the
daemon once stayed up 30 s after SIGTERM in CI. These tests send the signals into exactly
those loops, many times."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import threading
import time

import pytest

from retention.run import stop

LOOPS = {
    # the daemon's main loop and the throttle's sleep, made as tight as they can be
    "wait": "while not stop.requested.wait(0.0): pass",
    "sleep": "while not throttle.sleep(0.0): pass",
    # a long wait: the signal must wake it, not the end of the 30 s
    "long wait": "while not stop.requested.wait(30.0): pass",
    "clear": textwrap.dedent("""\
        hup = stop.Flag()
        signal.signal(signal.SIGHUP, lambda *_: hup.set())
        print("hup", flush=True)
        seen = 0
        while not stop.requested.wait(0.0):
            if hup.is_set():
                hup.clear()
                seen += 1
        print("hups", seen, flush=True)"""),
}


def child(loop: str) -> subprocess.Popen[str]:
    code = "\n".join([
        "import signal",
        "from retention.run import stop, throttle",
        "stop.install()",
        "print('ready', flush=True)",
        LOOPS[loop],
        "print('stopped', flush=True)",
    ])
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    assert proc.stdout.readline() == "ready\n"
    return proc


@pytest.mark.parametrize("loop", ["wait", "sleep", "long wait"])
@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_a_stop_signal_ends_a_loop_that_waits_on_the_flag(loop: str, sig: int) -> None:
    for _ in range(2 if loop == "long wait" else 6):  # the old Event hung in half of these
        proc = child(loop)
        time.sleep(0.05)
        proc.send_signal(sig)
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            pytest.fail(f"{loop}: still running 10 s after {sig!r}")
        assert proc.returncode == 0
        assert proc.stdout is not None and proc.stdout.read() == "stopped\n"
        assert proc.stderr is not None and proc.stderr.read() == ""  # nothing at exit either


def test_signals_that_set_a_flag_the_main_thread_clears_never_hang_it() -> None:
    proc = child("clear")
    assert proc.stdout is not None and proc.stdout.readline() == "hup\n"
    for _ in range(200):
        proc.send_signal(signal.SIGHUP)
        time.sleep(0.002)
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(10)
    except subprocess.TimeoutExpired:
        proc.kill()
        pytest.fail("still running 10 s after SIGTERM")
    hups = proc.stdout.read().split()
    assert hups[0] == "hups" and int(hups[1]) >= 1 and hups[2:] == ["stopped"]


def test_a_flag_wakes_every_waiting_thread_and_stays_set_until_cleared() -> None:
    flag = stop.Flag()
    assert not flag.is_set() and flag.wait(0.01) is False
    woke: list[bool] = []
    threads = [threading.Thread(target=lambda limit: woke.append(flag.wait(limit)),
                                args=(limit,), daemon=True)
               for limit in (30, 86400 * 365, 1e12)]  # past what poll() takes in ms
    for t in threads:
        t.start()
    time.sleep(0.05)
    started = time.monotonic()
    flag.set()
    for t in threads:
        t.join(5)
    assert woke == [True, True, True] and time.monotonic() - started < 5
    assert flag.wait(0) and flag.wait(0.01)  # a set flag stays set
    flag.set()  # setting twice is harmless
    flag.clear()
    assert not flag.is_set() and flag.wait(0.05) is False  # cleared: waits the whole time
    flag.set()
    assert flag.wait(1)


def test_a_wake_up_that_a_clear_undid_does_not_end_a_wait_early() -> None:
    """set() then clear() from another thread while a wait runs: the wait lasts its time."""
    flag = stop.Flag()
    result: list[bool] = []
    waiter = threading.Thread(target=lambda: result.append(flag.wait(0.6)))
    started = time.monotonic()
    waiter.start()
    flag.set()
    flag.clear()
    os.write(flag._write, b"!")  # the byte a set() racing with clear() leaves behind
    waiter.join(5)
    assert result == [False] and time.monotonic() - started >= 0.6


def test_a_forked_child_wakes_only_itself() -> None:
    """The child has a pipe of its own: its wake-ups never reach (or drain) the parent's."""
    flag = stop.Flag()
    pid = os.fork()
    if pid == 0:  # the child: set its own copy, then leave at once
        flag.set()
        os._exit(0 if flag.wait(0) else 1)
    assert os.waitpid(pid, 0)[1] == 0
    with pytest.raises(BlockingIOError):
        os.read(flag._read, 1)  # nothing arrived in the parent's pipe
    assert flag.wait(0.05) is False and not flag.is_set()

