"""The test programs' runner (tests/apps/__main__.py) keeps a program's locals as a script's."""

from __future__ import annotations

import gc
import weakref

from tests.apps.__main__ import run_keeping_locals


class Held:
    pass


def test_a_programs_locals_outlive_its_return() -> None:
    refs: list[weakref.ref[Held]] = []

    def program() -> None:
        held = Held()
        refs.append(weakref.ref(held))

    run_keeping_locals(program)
    gc.collect()
    assert refs[0]() is not None


def test_a_program_that_raises_keeps_them_too_and_the_hook_is_gone() -> None:
    import sys

    refs: list[weakref.ref[Held]] = []

    def program() -> None:
        held = Held()
        refs.append(weakref.ref(held))
        raise RuntimeError("boom")

    try:
        run_keeping_locals(program)
    except RuntimeError:
        pass
    gc.collect()
    assert refs[0]() is not None
    assert sys.getprofile() is None
