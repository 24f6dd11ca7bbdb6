"""The one place that starts task processes, learns that they ended, and kills them.

Every task process leads its own session (`start_new_session=True`), so its process group is
the whole tree it starts: a timeout or a cancellation signals the group, then SIGKILLs it after
a grace period. Output goes from the process straight to its log file descriptor; nothing is
copied through Python.

`ExitWatcher` is what the runner's loop sleeps on: `poll` over a wake-up pipe (written by
worker threads and, through `signal.set_wakeup_fd`, by signals) and one pidfd per running
process, so a finished process wakes the loop at once without a thread per task. Where
`os.pidfd_open` is missing (Linux < 5.3) a small waiter thread per process does the same job.
`poll`, not epoll: watching a process then costs no system call (epoll needs two per process),
and the set is never larger than the concurrency limit.
"""

from __future__ import annotations

import errno
import math
import os
import select
import signal
import subprocess
import sys
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

KILL_GRACE = 10.0  # seconds between SIGTERM and SIGKILL


def _pidfd_supported() -> bool:
    if not hasattr(os, "pidfd_open"):
        return False
    try:
        os.close(os.pidfd_open(os.getpid()))
    except OSError:
        return False
    return True


PIDFD = _pidfd_supported()


@dataclass(eq=False)
class Process:
    """A started task process (the leader of its own process group)."""

    pid: int
    popen: subprocess.Popen[bytes] | None = None  # None: started with os.posix_spawn
    pidfd: int | None = None
    returncode: int | None = None

    def reap(self, block: bool = False) -> int | None:
        """The exit status if the process has ended (reaping it), else None.

        Negative -N for a process killed by signal N, as `subprocess` reports it.
        """
        if self.returncode is None:
            if self.popen is not None:
                self.returncode = self.popen.wait() if block else self.popen.poll()
            else:
                try:
                    pid, status = os.waitpid(self.pid, 0 if block else os.WNOHANG)
                except ChildProcessError:  # reaped elsewhere: the status is lost
                    self.returncode = -signal.SIGKILL
                else:
                    if pid == self.pid:
                        self.returncode = os.waitstatus_to_exitcode(status)
        return self.returncode

    def signal_group(self, signum: int) -> None:
        """Signal the whole process group; a group already gone is not an error."""
        try:
            os.killpg(self.pid, signum)
        except (ProcessLookupError, PermissionError):
            pass

    def group_alive(self) -> bool:
        """Some process of the group still exists (the leader may be gone already)."""
        try:
            os.killpg(self.pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            return True
        return True

    def close(self) -> None:
        if self.pidfd is not None:
            os.close(self.pidfd)
            self.pidfd = None


def exit_code(returncode: int) -> int:
    """A shell-style exit code: 128 + N for a process killed by signal N."""
    return 128 - returncode if returncode < 0 else returncode


def describe_exit(returncode: int) -> str:
    if returncode < 0:
        try:
            name = signal.Signals(-returncode).name
        except ValueError:
            name = f"signal {-returncode}"
        return f"killed by {name}"
    return f"exit code {returncode}"


class SpawnError(Exception):
    """The executable could not be started; `exit_code` is what a shell would report."""

    def __init__(self, message: str, exit_code: int) -> None:
        super().__init__(message)
        self.exit_code = exit_code


# Signals Python ignores at start-up; a task gets them at their default again, as with
# subprocess's `restore_signals`.
_RESTORED_SIGNALS = tuple(
    getattr(signal, name) for name in ("SIGPIPE", "SIGXFZ", "SIGXFSZ") if hasattr(signal, name)
)
POSIX_SPAWN = sys.platform == "linux" and hasattr(os, "posix_spawn")
_found: dict[tuple[str, str], str] = {}  # (name, PATH) -> executable, for posix_spawn
_sealed = False


def spawn(argv: list[str], env: Mapping[str, str], cwd: Path | None, output_fd: int) -> Process:
    """Start argv in a new session with stdin from /dev/null and stdout+stderr to output_fd.

    The common case (the task runs in mflow's own working directory) goes through
    `os.posix_spawn`, a few system calls from C: about 100 µs of mflow's CPU per process here,
    against 320 µs for `subprocess.Popen` (its Python code is most of what separated a run of
    thousands of short tasks from `make -j`). posix_spawn cannot change directory before the
    exec, so a task with another `cwd` goes through Popen. The result is
    the same: new session, default signal dispositions, only stdin/stdout/stderr inherited
    (`_seal_inherited_fds`), the executable looked up in the task's own PATH.
    """
    try:
        if POSIX_SPAWN and output_fd > 2 and (cwd is None or str(cwd) == os.getcwd()):
            return _posix_spawn(argv, env, output_fd)
        popen = _popen(argv, env, cwd, output_fd)
        return Process(popen.pid, popen)
    except FileNotFoundError as exc:
        missing = exc.filename if exc.filename is not None else argv[0]
        if cwd is not None and missing == str(cwd):
            raise SpawnError(f"working directory not found: {cwd}", 126) from None
        raise SpawnError(f"{argv[0]}: command not found", 127) from None
    except PermissionError:
        raise SpawnError(f"{argv[0]}: permission denied", 126) from None
    except NotADirectoryError:
        raise SpawnError(f"working directory is not a directory: {cwd}", 126) from None
    except OSError as exc:
        raise SpawnError(f"{argv[0]}: {exc.strerror}", 126) from None


def _popen(
    argv: list[str], env: Mapping[str, str], cwd: Path | None, output_fd: int
) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        argv,
        stdin=subprocess.DEVNULL,
        stdout=output_fd,
        stderr=output_fd,
        env=env,
        cwd=cwd,
        start_new_session=True,
        close_fds=True,
    )


def _posix_spawn(argv: list[str], env: Mapping[str, str], output_fd: int) -> Process:
    _seal_inherited_fds()
    path = _search_path(argv[0], env)
    actions = [
        (os.POSIX_SPAWN_OPEN, 0, os.devnull, os.O_RDONLY, 0),
        (os.POSIX_SPAWN_DUP2, output_fd, 1),
        (os.POSIX_SPAWN_DUP2, output_fd, 2),
    ]
    try:
        pid = os.posix_spawn(
            path, argv, env, file_actions=actions, setsid=True, setsigdef=_RESTORED_SIGNALS
        )
    except FileNotFoundError:
        if path == argv[0]:
            raise
        _found.pop((argv[0], env.get("PATH", "")), None)  # gone since it was found: look again
        path = _search_path(argv[0], env)
        pid = os.posix_spawn(
            path, argv, env, file_actions=actions, setsid=True, setsigdef=_RESTORED_SIGNALS
        )
    return Process(pid)


def _search_path(name: str, env: Mapping[str, str]) -> str:
    """Where execvpe would find `name` with the task's PATH (remembered for the run)."""
    if "/" in name:
        return name
    key = (name, env.get("PATH", ""))
    found = _found.get(key)
    if found is not None:
        return found
    denied = None
    for directory in os.get_exec_path(dict(env)):
        candidate = os.path.join(directory, name)
        if os.path.isfile(candidate):
            if os.access(candidate, os.X_OK):
                _found[key] = candidate
                return candidate
            denied = denied or candidate
    if denied is not None:
        raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), denied)
    raise FileNotFoundError(errno.ENOENT, os.strerror(errno.ENOENT), name)


def _seal_inherited_fds() -> None:
    """Make every descriptor above 2 close on exec, once: what `close_fds=True` guarantees.

    Python opens everything non-inheritable already (PEP 446), and so do the C libraries mflow
    loads (SQLite, libpq); this catches descriptors mflow itself inherited from its parent.
    """
    global _sealed
    if _sealed:
        return
    _sealed = True
    try:
        fds = [int(name) for name in os.listdir("/proc/self/fd")]
    except OSError:
        return
    for fd in fds:
        if fd > 2:
            try:
                os.set_inheritable(fd, False)
            except OSError:  # the listing's own descriptor, already closed
                pass


class ExitWatcher:
    """Sleeps until a watched process ends, a worker thread calls `wake`, or a signal comes."""

    def __init__(self, use_pidfd: bool = PIDFD) -> None:
        self.use_pidfd = use_pidfd
        self._poll = select.poll()
        self._wake_r, self._wake_w = os.pipe()
        os.set_blocking(self._wake_r, False)
        os.set_blocking(self._wake_w, False)
        self._poll.register(self._wake_r, select.POLLIN)
        self._watched: dict[int, Process] = {}  # pidfd -> its process
        self._exited: list[Process] = []  # from waiter threads (no pidfd)
        self._ended: list[Process] = []  # reaped by `wait`, not yet taken
        self._lock = threading.Lock()

    @property
    def wakeup_fd(self) -> int:
        """For `signal.set_wakeup_fd`: a signal then wakes `wait` too."""
        return self._wake_w

    def start(
        self, argv: list[str], env: Mapping[str, str], cwd: Path | None, output_fd: int
    ) -> Process:
        """Spawn and watch a process. Raises SpawnError."""
        proc = spawn(argv, env, cwd, output_fd)
        if self.use_pidfd:
            try:
                proc.pidfd = os.pidfd_open(proc.pid)
            except OSError:  # ENOSYS under some seccomp filters: a waiter thread instead
                proc.pidfd = None
        if proc.pidfd is not None:
            self._watched[proc.pidfd] = proc
            self._poll.register(proc.pidfd, select.POLLIN)
        else:
            threading.Thread(target=self._wait_for, args=(proc,), daemon=True).start()
        return proc

    def _wait_for(self, proc: Process) -> None:
        proc.reap(block=True)
        with self._lock:
            self._exited.append(proc)
        self.wake()

    def wake(self) -> None:
        try:
            os.write(self._wake_w, b"\0")
        except BlockingIOError:  # the pipe is full: the loop will wake anyway
            pass

    def wait(self, timeout: float | None) -> None:
        """Sleep until something happens, at most `timeout` seconds; processes that ended
        are reaped and kept for `take_ended`."""
        ended = self._ended
        ms = None if timeout is None else math.ceil(max(timeout, 0.0) * 1000)
        for fd, _ in self._poll.poll(ms):
            proc = self._watched.get(fd)
            if proc is None:  # the wake-up pipe
                try:
                    while os.read(self._wake_r, 4096):
                        pass
                except BlockingIOError:
                    pass
            elif proc.reap() is not None:
                self._poll.unregister(fd)
                del self._watched[fd]
                proc.close()
                ended.append(proc)
        if self._exited:
            with self._lock:
                exited, self._exited = self._exited, []
            for proc in exited:
                proc.reap()
                ended.append(proc)

    def take_ended(self) -> list[Process]:
        """The processes that ended (reaped) since the last call."""
        ended = self._ended
        if ended:
            self._ended = []
        return ended

    def close(self) -> None:
        os.close(self._wake_r)
        os.close(self._wake_w)


class GroupWatchdog:
    """A shell that kills process group `pgid` if this process dies first (a Celery worker
    SIGKILLed with its pool: mflow.worker): it waits on a pipe only this process holds
    (close-on-exec, so the task does not inherit it); end of file without "done" means this
    process is gone. Its own session, so whatever kills the worker's group spares it."""

    def __init__(self, pgid: int, grace: float) -> None:
        read, self.write = os.pipe()
        script = (
            'read line; [ "$line" = done ] && exit 0; '
            f"kill -TERM -{pgid} 2>/dev/null; sleep {grace:g}; kill -KILL -{pgid} 2>/dev/null"
        )
        try:
            self.process: subprocess.Popen[bytes] | None = subprocess.Popen(
                ["/bin/sh", "-c", script], stdin=read, start_new_session=True
            )
        except OSError:
            self.process = None
        finally:
            os.close(read)

    def release(self) -> None:
        """The group has been dealt with: the watchdog exits without a signal."""
        try:
            os.write(self.write, b"done\n")
        except OSError:
            pass
        os.close(self.write)
        if self.process is not None:
            self.process.wait()
