"""Process checks shared by the tests that kill runners and steps (importable by test modules)."""
import os
import time


def running(pid: int) -> bool:
    """Whether process ``pid`` runs. A zombie (ended, not yet reaped: in a container whose PID 1 does
    not reap, an orphan stays one) counts as ended."""
    try:
        with open(f"/proc/{pid}/stat", encoding="utf-8") as stat:
            return stat.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False
    except OSError:  # no /proc (not Linux): signal 0 only asks whether the pid exists
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        return True


def ended_within(pid: int, seconds: float = 5.0) -> bool:
    """Whether process ``pid`` has ended within ``seconds``."""
    deadline = time.time() + seconds
    while running(pid):
        if time.time() >= deadline:
            return False
        time.sleep(0.1)
    return True
