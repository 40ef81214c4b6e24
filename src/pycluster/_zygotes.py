"""The primary's side of preloading: start a zygote, wait until it has imported, ask it to fork.

``Preloader.current(settings)`` gives the zygote that serves the settings' ``preload`` (starting
a new one when there is none, when it died, or when a setting it depends on changed) and
``refresh`` replaces it with one that imports the code afresh (a reload), keeping the old one if
the new one fails. ``Zygote.spawn`` returns a ``ForkedProcess``: while the zygote forks, the
primary is a child subreaper (``PR_SET_CHILD_SUBREAPER``), so the worker, orphaned by the zygote's
middle process, becomes the primary's own child. The flag is set only for that moment, so that
what a worker leaves behind when it dies goes to init, as it does without preload.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import IO, Any

from ._errors import ClusterError, PreloadError, ProtocolError
from ._forked import ForkedProcess
from ._loop import Loop
from ._spawn import program_argv, program_path, worker_argv
from ._zygote_wire import (
    ENV_ZYGOTE_FD,
    Failed,
    Preload,
    Ready,
    Spawn,
    Spawned,
    receive,
    send,
    zygote_argv,
)

#: ``PYCLUSTER_PRELOAD_FREEZE=0``: no ``gc.freeze()`` in the zygote (to measure what it saves).
FREEZE_ENV = "PYCLUSTER_PRELOAD_FREEZE"
#: How long a fork may take before the zygote is taken for stuck.
SPAWN_TIMEOUT = 30.0
_PR_SET_CHILD_SUBREAPER = 36
_PR_GET_CHILD_SUBREAPER = 37


class ZygoteGone(ClusterError):
    """The zygote ended (killed?) before it answered; a new one can take its place."""


@dataclass(frozen=True)
class ZygoteKey:
    """What a zygote's imports depend on: a change of any needs a new zygote."""

    modules: tuple[str, ...]
    exec_argv: tuple[str, ...]
    path: str
    cwd: str | None

    @classmethod
    def of(cls, settings: Mapping[str, Any]) -> ZygoteKey:
        cwd = settings.get("cwd")
        return cls(
            tuple(settings["preload"]),
            tuple(settings["exec_argv"]),
            program_path(settings["exec"], cwd),
            cwd,
        )


def check_supported() -> None:
    if not sys.platform.startswith("linux"):
        raise ClusterError(
            "setting 'preload' needs Linux (a child subreaper adopts the forked workers); "
            f"this is {sys.platform}"
        )


class Zygote:
    """One preload server process and the socket to it."""

    def __init__(self, key: ZygoteKey, loop: Loop) -> None:
        self.key = key
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        self._sock = ours
        self._closed = False
        self._lock = threading.Lock()
        env = {**os.environ, ENV_ZYGOTE_FD: str(theirs.fileno())}
        try:
            # From the loop thread, like the workers: its parent-death signal follows that thread.
            self.process: subprocess.Popen[bytes] = loop.run_sync(
                lambda: subprocess.Popen(
                    zygote_argv(key.exec_argv),
                    env=env,
                    cwd=key.cwd,
                    pass_fds=(theirs.fileno(),),
                )
            )
        finally:
            theirs.close()
        freeze = os.environ.get(FREEZE_ENV, "1") != "0"
        send(self._sock, Preload(key.modules, key.path, freeze))
        self.seconds: float | None = None

    @property
    def pid(self) -> int:
        return self.process.pid

    def alive(self) -> bool:
        return not self._closed and self.process.poll() is None

    def wait_ready(self) -> float:
        """Block until the zygote has imported everything: the seconds it took, or
        ``PreloadError``."""
        with self._lock:
            if self.seconds is not None:
                return self.seconds
            try:
                answer = self._answer(None)
            except ZygoteGone:
                answer = None  # said below, as an exit before it was ready
            if isinstance(answer, Ready):
                self.seconds = answer.seconds
                return answer.seconds
            self.close()
            if isinstance(answer, Failed):
                raise PreloadError(answer.module, answer.error, answer.detail)
            code = self.process.wait()
            raise PreloadError(
                ", ".join(self.key.modules),
                f"the preload server exited (code {code}) before it was ready",
            )

    def spawn(
        self,
        worker_id: int,
        settings: Mapping[str, Any],
        env: dict[str, str],
        channel: int,
    ) -> ForkedProcess:
        """Fork worker ``worker_id``: a ``ForkedProcess``, the primary's child."""
        exec_, args = settings["exec"], settings["args"]
        stdio, to_close, ours = _stdio(settings.get("stdio"), bool(settings.get("silent")))
        request = Spawn(
            worker_id,
            tuple(program_argv(exec_, args)),
            env,
            settings.get("cwd"),
            _user_id(settings.get("uid")),
            _group_id(settings.get("gid")),
        )
        try:
            with self._lock:
                previous = _subreaper(True)
                try:
                    try:
                        send(self._sock, request, [channel, *stdio])
                    except OSError as exc:
                        raise ZygoteGone(f"the preload server is gone ({exc})") from None
                    answer = self._answer(SPAWN_TIMEOUT)
                finally:
                    _subreaper(previous)
            if not isinstance(answer, Spawned):
                raise ZygoteGone("the preload server ended before it answered")
            if answer.error:
                if answer.pid:
                    _reap(answer.pid)
                raise OSError(f"worker {worker_id} could not start: {answer.error}")
        except BaseException:
            for pipe in ours:
                if pipe is not None:
                    pipe.close()
            raise
        finally:
            for fd in to_close:  # the worker's ends of pipes, /dev/null: the worker has them
                os.close(fd)
        return ForkedProcess(answer.pid, worker_argv(exec_, args, self.key.exec_argv), *ours)

    def _answer(self, timeout: float | None) -> object:
        self._sock.settimeout(timeout)
        try:
            got = receive(self._sock)
        except TimeoutError:
            raise ZygoteGone(f"the preload server did not answer within {timeout} s") from None
        except (OSError, ProtocolError) as exc:
            raise ZygoteGone(f"the preload server is gone ({exc})") from None
        if got is None:
            return None
        message, fds = got
        for fd in fds:
            os.close(fd)
        return message

    def close(self, *, wait: bool = False) -> None:
        """End it (it exits at the end of its socket) and reap it, in the background (or now,
        with ``wait``: before an exec, which would end the thread and leave a zombie)."""
        if self._closed:
            return
        self._closed = True
        self._sock.close()
        process = self.process

        def reap() -> None:
            try:
                process.wait(5)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()

        if wait:
            reap()
        else:
            threading.Thread(target=reap, name="pycluster-zygote-reap", daemon=True).start()


class Preloader:
    """The zygote that serves the current settings (one at a time)."""

    def __init__(self, loop: Loop) -> None:
        self._loop = loop
        self._zygote: Zygote | None = None
        self._lock = threading.Lock()

    @property
    def zygote(self) -> Zygote | None:
        return self._zygote

    def current(self, settings: Mapping[str, Any]) -> Zygote:
        """A ready zygote for ``settings`` (started and waited for if need be)."""
        key = ZygoteKey.of(settings)
        with self._lock:
            zygote = self._zygote
            if zygote is None or zygote.key != key or not zygote.alive():
                zygote = self._replace(Zygote(key, self._loop))
        try:
            zygote.wait_ready()
        except PreloadError:
            self.forget(zygote)  # the next fork tries a new one
            raise
        return zygote

    def refresh(self, settings: Mapping[str, Any]) -> float:
        """Replace the zygote with one that imports afresh; the old one stays if it fails."""
        new = Zygote(ZygoteKey.of(settings), self._loop)
        seconds = new.wait_ready()  # PreloadError: the old one keeps serving
        with self._lock:
            self._replace(new)
        return seconds

    def forget(self, zygote: Zygote) -> None:
        with self._lock:
            if self._zygote is zygote:
                self._zygote = None
        zygote.close()

    def close(self, *, wait: bool = False) -> None:
        with self._lock:
            old, self._zygote = self._zygote, None
        if old is not None:
            old.close(wait=wait)

    def _replace(self, new: Zygote | None) -> Zygote:
        old, self._zygote = self._zygote, new
        if old is not None:
            old.close()
        return new  # type: ignore[return-value]


def _stdio(
    chosen: Sequence[str | int] | None, silent: bool
) -> tuple[list[int], list[int], list[IO[bytes] | None]]:
    """The worker's three descriptors, those of them to close once sent, and the primary's
    ends of its pipes (``Popen``'s stdin, stdout, stderr)."""
    if chosen is None:
        chosen = ("inherit", "pipe", "pipe") if silent else ("inherit",) * 3
    theirs: list[int] = []
    to_close: list[int] = []
    ours: list[IO[bytes] | None] = []
    for number, item in enumerate(chosen):
        if item == "pipe":
            r, w = os.pipe()
            theirs.append(r if number == 0 else w)
            to_close.append(theirs[-1])
            ours.append(open(w if number == 0 else r, "wb" if number == 0 else "rb"))  # noqa: SIM115
        elif item == "ignore":
            theirs.append(os.open(os.devnull, os.O_RDWR))
            to_close.append(theirs[-1])
            ours.append(None)
        else:
            theirs.append(number if item == "inherit" else int(item))
            ours.append(None)
    return theirs, to_close, ours


def _user_id(value: int | str | None) -> int | None:
    if isinstance(value, str):
        import pwd

        return pwd.getpwnam(value).pw_uid
    return value


def _group_id(value: int | str | None) -> int | None:
    if isinstance(value, str):
        import grp

        return grp.getgrnam(value).gr_gid
    return value


def _subreaper(on: bool) -> bool:
    """Set this process's child-subreaper flag; what it was."""
    import ctypes

    libc = ctypes.CDLL(None, use_errno=True)
    was = ctypes.c_int(0)
    libc.prctl(_PR_GET_CHILD_SUBREAPER, ctypes.byref(was), 0, 0, 0)
    if bool(was.value) != on and libc.prctl(_PR_SET_CHILD_SUBREAPER, int(on), 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_CHILD_SUBREAPER) failed")
    return bool(was.value)


def _reap(pid: int) -> None:
    try:
        os.waitpid(pid, 0)
    except ChildProcessError:
        pass
