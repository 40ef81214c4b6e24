"""The supervisor's control socket, and the client that ``pycluster status/reload/scale/stop`` use.

A Unix stream socket per cluster, ``<dir>/<name>.sock``, where ``<dir>`` is
``$XDG_RUNTIME_DIR/pycluster`` or else ``/tmp/pycluster-<uid>``: a directory of the user's with
mode 0700 (one with any other owner or mode is refused, not repaired), the socket 0600, and on
Linux every peer's uid checked with SO_PEERCRED: only the supervisor's own user (and root) may
steer it. One request per connection, one JSON object per line each way:
``{"cmd": "status"}`` -> ``{"ok": true, ...}`` or ``{"ok": false, "error": "..."}``.
"""

from __future__ import annotations

import errno
import json
import os
import socket
import stat
import struct
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

COMMANDS = ("status", "reload", "scale", "stop", "upgrade")
MAX_REQUEST = 64 * 1024
Reply = Callable[[dict[str, Any]], None]


class ControlError(Exception):
    """The control socket cannot be set up or reached; the message says why."""


class Replier:
    """A request's ``reply``: one JSON line on its connection, then the connection closes. Its
    connection can cross an in-place upgrade (``_upgrading``), answered by the new program."""

    def __init__(self, conn: socket.socket) -> None:
        self.conn = conn

    def __call__(self, answer: dict[str, Any]) -> None:
        try:
            self.conn.sendall(json.dumps(answer).encode() + b"\n")
        except OSError:
            pass
        finally:
            self.conn.close()

    @classmethod
    def adopted(cls, fd: int) -> Replier:
        conn = socket.socket(fileno=fd)
        conn.set_inheritable(False)
        conn.setblocking(True)
        return cls(conn)


def control_dir(environ: dict[str, str] | None = None) -> Path:
    environ = dict(os.environ) if environ is None else environ
    runtime = environ.get("XDG_RUNTIME_DIR", "")
    if runtime and os.path.isdir(runtime):
        return Path(runtime) / "pycluster"
    return Path(f"/tmp/pycluster-{os.getuid()}")


def _private_dir(directory: Path) -> Path:
    """``directory``, made 0700 if new; refused if someone else could use or replace it."""
    try:
        directory.mkdir(mode=0o700, parents=False)
    except FileExistsError:
        pass
    except OSError as exc:
        raise ControlError(f"cannot create the control directory {directory}: {exc}") from None
    info = directory.lstat()
    if not stat.S_ISDIR(info.st_mode):
        raise ControlError(f"{directory} is not a directory (a symlink?); remove it")
    if info.st_uid != os.getuid():
        raise ControlError(f"{directory} belongs to uid {info.st_uid}, not to this user")
    if info.st_mode & 0o077:
        raise ControlError(
            f"{directory} has mode {stat.S_IMODE(info.st_mode):o}; it must be 700 "
            "(only its owner may reach the control sockets)"
        )
    return directory


def socket_path(name: str, directory: Path) -> Path:
    if not name or "/" in name or name.startswith(".") or "\0" in name:
        raise ControlError(f"bad cluster name {name!r}: use letters, digits, '-', '_' or '.'")
    return directory / f"{name}.sock"


def peer_uid(conn: socket.socket) -> int | None:
    """The uid of the process at the other end (Linux), or None where it cannot be known."""
    option = getattr(socket, "SO_PEERCRED", None)
    if option is None:
        return None
    _pid, uid, _gid = struct.unpack("3i", conn.getsockopt(socket.SOL_SOCKET, option, 12))
    return int(uid)


def _from_this_process(conn: socket.socket) -> bool:
    """Whether the peer is this process (``pause``'s wake-up); where it cannot be known, yes."""
    option = getattr(socket, "SO_PEERCRED", None)
    if option is None:
        return True
    pid, _uid, _gid = struct.unpack("3i", conn.getsockopt(socket.SOL_SOCKET, option, 12))
    return bool(pid == os.getpid())


class ControlServer:
    """Accepts control requests on a thread of its own and hands each to ``on_request``.

    ``on_request(request, reply)`` runs on the server's thread; it must hand the work over
    (the supervisor puts it in its queue) and call ``reply`` once, from any thread.
    """

    def __init__(
        self,
        path: Path,
        on_request: Callable[[dict[str, Any], Reply], None],
        sock: socket.socket | None = None,
    ) -> None:
        self.path = path
        self._on_request = on_request
        if sock is None:
            _private_dir(path.parent)
            self._claim(path)
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            old_umask = os.umask(0o177)
            try:
                sock.bind(str(path))
            finally:
                os.umask(old_umask)
            os.chmod(path, 0o600)
            sock.listen(16)
        self._sock = sock
        self._thread = threading.Thread(target=self._serve, name="pycluster-control", daemon=True)
        self._closed = False
        self._paused = False
        self._handlers: set[threading.Thread] = set()

    @classmethod
    def adopted(
        cls, path: Path, fd: int, on_request: Callable[[dict[str, Any], Reply], None]
    ) -> ControlServer:
        """The control socket an in-place upgrade kept open (descriptor ``fd``)."""
        sock = socket.socket(fileno=fd)
        sock.set_inheritable(False)
        return cls(path, on_request, sock)

    def fileno(self) -> int:
        return self._sock.fileno()

    def pause(self) -> None:
        """Stop accepting (the socket stays open: clients wait in its backlog); returns once the
        accepting thread is done and every request it accepted has been handed over."""
        self._paused = True
        if self._thread.is_alive():
            try:  # wake the thread blocked in accept()
                with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as wake:
                    wake.connect(str(self.path))
                    self._thread.join(10)
            except OSError:
                pass
        for handler in list(self._handlers):
            handler.join(10)

    def resume(self) -> None:
        """Accept again after ``pause`` (an upgrade that did not happen)."""
        if self._paused and not self._closed:
            self._paused = False
            self._thread = threading.Thread(
                target=self._serve, name="pycluster-control", daemon=True
            )
            self._thread.start()

    @staticmethod
    def _claim(path: Path) -> None:
        """Remove a stale socket; refuse if a live cluster answers there."""
        if not path.exists() and not path.is_symlink():
            return
        probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        probe.settimeout(2)
        try:
            probe.connect(str(path))
        except OSError:
            path.unlink(missing_ok=True)  # nobody there: left by a cluster that was killed
            return
        finally:
            probe.close()
        raise ControlError(
            f"a cluster named {path.stem!r} is already running (control socket {path}); "
            "stop it or give this one another --name"
        )

    def start(self) -> None:
        self._thread.start()

    def close(self) -> None:
        self._closed = True
        try:
            self._sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self._sock.close()
        self.path.unlink(missing_ok=True)

    def _serve(self) -> None:
        while not self._closed:
            try:
                conn, _ = self._sock.accept()
            except OSError as exc:
                if self._closed or exc.errno in (errno.EBADF, errno.EINVAL):
                    return
                continue
            if self._paused and _from_this_process(conn):
                conn.close()  # pause()'s wake-up
                return
            handler = threading.Thread(
                target=self._handle, args=(conn,), name="pycluster-control-conn", daemon=True
            )
            self._handlers.add(handler)
            handler.start()

    def _handle(self, conn: socket.socket) -> None:
        try:
            self._answer(conn)
        finally:
            self._handlers.discard(threading.current_thread())

    def _answer(self, conn: socket.socket) -> None:
        conn.settimeout(10)
        reply = Replier(conn)
        # A refused peer's request is read too: closing while it still sends would hand it
        # EPIPE instead of the refusal.
        uid = peer_uid(conn)
        try:
            request = _read_request(conn)
        except (OSError, ValueError) as exc:
            request, error = {}, f"bad request: {exc}"
        else:
            error = ""
        if uid is not None and uid not in (os.getuid(), 0):
            error = f"refused: uid {uid} is not this cluster's user"
        if error:
            reply({"ok": False, "error": error})
            return
        self._on_request(request, reply)


def _read_request(conn: socket.socket) -> dict[str, Any]:
    data = b""
    while not data.endswith(b"\n"):
        chunk = conn.recv(4096)
        if not chunk:
            break
        data += chunk
        if len(data) > MAX_REQUEST:
            raise ValueError(f"longer than {MAX_REQUEST} bytes")
    request = json.loads(data)
    if not isinstance(request, dict) or request.get("cmd") not in COMMANDS:
        raise ValueError(f"expected {{'cmd': one of {', '.join(COMMANDS)}}}, got {request!r:.80}")
    return request


# -- the client ----------------------------------------------------------------------------------


def find(name: str | None, directory: Path) -> Path:
    """The control socket of cluster ``name``; without a name, the only one running."""
    if name:
        path = socket_path(name, directory)
        if not path.exists():
            raise ControlError(f"no cluster named {name!r} is running (no {path})")
        return path
    found = sorted(directory.glob("*.sock")) if directory.is_dir() else []
    if not found:
        raise ControlError(f"no cluster is running (no control socket in {directory})")
    if len(found) > 1:
        names = ", ".join(p.stem for p in found)
        raise ControlError(f"several clusters are running ({names}); choose one with --name")
    return found[0]


def request(path: Path, command: dict[str, Any], timeout: float | None = 120) -> dict[str, Any]:
    """Send one request and wait for the answer (reload and stop answer once done)."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(timeout)
        try:
            sock.connect(str(path))
        except OSError as exc:
            raise ControlError(f"cannot reach the cluster at {path}: {exc}") from None
        data = b""
        try:
            sock.sendall(json.dumps(command).encode() + b"\n")
            while chunk := sock.recv(65536):
                data += chunk
        except OSError as exc:  # a timeout, or the cluster went away
            raise ControlError(f"no answer from the cluster at {path}: {exc}") from None
    try:
        answer = json.loads(data)
    except ValueError:
        answer = None
    if not isinstance(answer, dict):
        raise ControlError(f"the cluster at {path} did not answer properly ({data[:80]!r})")
    return answer


def default_name(exec_: str) -> str:
    """A cluster's name when none is given: the script's stem, or the module's name."""
    if exec_.startswith("-m"):
        return exec_[2:].strip()
    return Path(exec_).stem or "pycluster"
