"""setup_primary validation (in-process, no workers) and the scheduling policy rules."""

from __future__ import annotations

import sys

import pytest

from pycluster import SCHED_NONE, SCHED_REUSEPORT, SCHED_RR
from pycluster._settings import (
    POLICY_ENV,
    SETTING_NAMES,
    coerce_policy,
    default_exec_argv,
    defaults,
    policy_from_env,
    validate,
)


def test_valid_settings_are_normalised() -> None:
    checked = validate(
        {
            "exec": "app.py",
            "args": ["--port", "3000"],
            "exec_argv": ("-X", "dev"),
            "cwd": None,
            "silent": True,
            "stdio": "pipe",
            "uid": 0,
            "gid": "root",
            "serialization": "pickle",
            "preload": ["app", "app.models"],
            "scheduling_policy": "none",
        }
    )
    assert checked["args"] == ("--port", "3000")
    assert checked["preload"] == ("app", "app.models")
    assert checked["stdio"] == ("pipe", "pipe", "pipe")
    assert "scheduling_policy" not in checked


@pytest.mark.parametrize(
    ("settings", "error", "message"),
    [
        ({"exce": "x"}, TypeError, "unknown setting 'exce'; known settings: exec, args"),
        ({"exec": 3}, TypeError, "setting 'exec' must be a str, not 3"),
        ({"exec": " "}, ValueError, "must name a script or '-m module'"),
        ({"exec": "-m "}, ValueError, "names no module after -m"),
        ({"args": "a b"}, TypeError, "setting 'args' must be a list of str, not 'a b'"),
        ({"args": ["a", 1]}, TypeError, "setting 'args' must hold only str, but holds 1"),
        ({"exec_argv": None}, TypeError, "setting 'exec_argv' must be a list of str"),
        ({"silent": 1}, TypeError, "setting 'silent' must be a bool, not 1"),
        ({"stdio": ["pipe"]}, TypeError, "setting 'stdio' must be"),
        ({"stdio": ["pipe", "x", 1]}, ValueError, "'x' is not 'pipe', 'inherit', 'ignore'"),
        ({"stdio": ["pipe", -1, 1]}, ValueError, "-1 is not"),
        ({"uid": -1}, ValueError, "setting 'uid' must be >= 0, not -1"),
        ({"uid": 1.5}, TypeError, "setting 'uid' must be a user id or name, not 1.5"),
        ({"uid": "no-such-user-x"}, ValueError, "there is no user named 'no-such-user-x'"),
        ({"gid": "no-such-group-x"}, ValueError, "there is no group named 'no-such-group-x'"),
        ({"serialization": "advanced"}, ValueError, "must be one of ('json', 'pickle')"),
        ({"cwd": 5}, TypeError, "setting 'cwd' must be a str, not 5"),
        ({"preload": "app"}, TypeError, "setting 'preload' must be a list of str, not 'app'"),
        ({"preload": ["app:app"]}, ValueError, "setting 'preload': 'app:app' is not a module"),
        ({"preload": ["my app"]}, ValueError, "'my app' is not a module name"),
        ({"sticky": "cookie"}, ValueError, "'sticky' must be one of ('none', 'ip') or None"),
    ],
)
def test_bad_settings_name_the_setting_and_value(
    settings: dict[str, object], error: type[Exception], message: str
) -> None:
    with pytest.raises(error, match=message.replace("(", r"\(").replace(")", r"\)")):
        validate(settings)


def test_every_setting_has_a_validator() -> None:
    assert set(SETTING_NAMES) == {
        "exec", "args", "exec_argv", "cwd", "silent", "stdio", "uid", "gid", "serialization",
        "hold_ports", "preload", "sticky", "scheduling_policy",
    }  # fmt: skip


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (SCHED_RR, SCHED_RR),
        (1, SCHED_NONE),
        (2, SCHED_RR),
        (3, SCHED_REUSEPORT),
        ("rr", SCHED_RR),
        ("NONE", SCHED_NONE),
        ("reuseport", SCHED_REUSEPORT),
    ],
)
def test_policy_coercion(value: object, expected: object) -> None:
    assert coerce_policy(value) is expected


@pytest.mark.parametrize(
    ("value", "error"),
    [(7, ValueError), ("fifo", ValueError), (True, TypeError), (None, TypeError), (2.0, TypeError)],
)
def test_bad_policy(value: object, error: type[Exception]) -> None:
    with pytest.raises(error, match=f"scheduling_policy.*{value!r}"):
        coerce_policy(value)


def test_policy_from_env() -> None:
    assert policy_from_env({}) is SCHED_RR
    assert policy_from_env({POLICY_ENV: ""}) is SCHED_RR
    assert policy_from_env({POLICY_ENV: "none"}) is SCHED_NONE
    with pytest.raises(ValueError, match=f"environment variable {POLICY_ENV}: 'bogus'"):
        policy_from_env({POLICY_ENV: "bogus"})


def test_defaults_only_for_what_is_not_given() -> None:
    assert set(defaults({})) == {"exec", "args", "exec_argv", "silent"}
    assert set(defaults({"exec": "x", "silent": True})) == {"args", "exec_argv"}
    assert defaults({"exec": "x"})["args"] == tuple(sys.argv[1:])


@pytest.mark.parametrize(
    ("orig_argv", "argv", "expected"),
    [
        (["python", "-X", "dev", "-W", "error", "app.py", "a"], ["app.py", "a"],
         ("-X", "dev", "-W", "error")),
        (["python", "app.py"], ["app.py"], ()),
        (["python", "-u", "-c", "code", "x"], ["-c", "x"], ("-u",)),
        (["python", "-uc", "code"], ["-c"], ("-u",)),
    ],
)  # fmt: skip
def test_default_exec_argv_reads_interpreter_options(
    monkeypatch: pytest.MonkeyPatch, orig_argv: list[str], argv: list[str], expected: tuple[str]
) -> None:
    monkeypatch.setattr(sys, "orig_argv", orig_argv)
    monkeypatch.setattr(sys, "argv", argv)
    assert default_exec_argv() == expected


def test_reuseport_needs_so_reuseport(monkeypatch: pytest.MonkeyPatch) -> None:
    import socket

    monkeypatch.delattr(socket, "SO_REUSEPORT", raising=False)
    with pytest.raises(ValueError, match="SCHED_REUSEPORT needs SO_REUSEPORT"):
        coerce_policy("reuseport")
    assert coerce_policy("rr") is SCHED_RR
