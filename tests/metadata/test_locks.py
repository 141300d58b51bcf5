"""Named locks across processes (loopworks.metadata.locks), on SQLite and PostgreSQL: a
holder keeps other processes out, and a holder killed with SIGKILL leaves nothing held."""

from __future__ import annotations

import signal
import subprocess
import sys
import textwrap
import threading

import pytest

from loopworks.errors import ConflictError
from loopworks.metadata import open_engine
from loopworks.metadata.locks import exclusive

HOLDER = textwrap.dedent("""
    import sys, time
    from loopworks.metadata import open_engine
    from loopworks.metadata.locks import exclusive
    with exclusive(open_engine(sys.argv[1]), "export:job"):
        print("held", flush=True)
        time.sleep(600)
""")


def _holder(url: str) -> subprocess.Popen[str]:
    proc = subprocess.Popen([sys.executable, "-c", HOLDER, url], stdout=subprocess.PIPE,
                            text=True)
    assert proc.stdout is not None and proc.stdout.readline().strip() == "held"
    return proc


def test_another_process_holding_it_keeps_us_out_until_killed(metadata_url: str) -> None:
    engine = open_engine(metadata_url)
    proc = _holder(metadata_url)
    try:
        with pytest.raises(ConflictError, match="export:job is held by another process"), \
                exclusive(engine, "export:job", timeout=0.3):
            pass
        with exclusive(engine, "export:other", timeout=0.3):  # other names are free
            pass
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
        with exclusive(engine, "export:job", timeout=10):  # the kernel / server let go
            pass
    finally:
        proc.kill()
        proc.wait()
        assert proc.stdout is not None
        proc.stdout.close()


def test_threads_of_one_process_take_turns(metadata_url: str) -> None:
    engine = open_engine(metadata_url)
    inside: list[int] = []
    overlaps: list[int] = []
    guard = threading.Lock()

    def work(n: int) -> None:
        for _ in range(5):
            with exclusive(engine, "export:job"):
                with guard:
                    inside.append(n)
                    if len(inside) > 1:
                        overlaps.append(n)
                with guard:
                    inside.remove(n)

    threads = [threading.Thread(target=work, args=(n,)) for n in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert overlaps == []
