"""The limits of template rendering: bounded ``*`` and ``**``, the output cap, and the worker
pool's time limit (a runaway worker is killed and replaced; stop leaves no process)."""

from __future__ import annotations

import multiprocessing

import pytest

from roost.boot.render import RenderError, render
from roost.boot.render_pool import InlineRenderer, Job, RenderPool, run

pytestmark = pytest.mark.unit

RUNAWAY = "{% for i in range(99999) %}{% for j in range(99999) %}{% endfor %}{% endfor %}"


@pytest.mark.parametrize(
    "source",
    [
        "{{ 'a' * 10**7 }}",
        "{{ 10**7 * 'a' }}",
        "{{ [1] * 10**7 }}",
        "{{ ('a',) * 2**30 }}",
        "{{ 10 ** (10 ** 7) }}",
    ],
)
def test_huge_values_are_refused_before_they_are_built(source: str) -> None:
    with pytest.raises(RenderError) as caught:
        render(source, {})
    assert caught.value.kind == "output"


def test_ordinary_arithmetic_still_works() -> None:
    assert render("{{ '-' * 20 }} {{ 2 ** 64 }} {{ 3 * 4 }} {{ [0] * 3 }}", {}) == (
        "-------------------- 18446744073709551616 12 [0, 0, 0]"
    )


def test_output_is_cut_at_the_limit_while_rendering() -> None:
    with pytest.raises(RenderError, match="output passed the limit of 2048") as caught:
        render("{% for i in range(100000) %}{{ 'x' * 50 }}{% endfor %}", {}, max_output=2048)
    assert caught.value.kind == "output"
    assert render("{{ 'x' * 2048 }}", {}, max_output=2048) == "x" * 2048


def test_the_sandbox_still_refuses_unsafe_attributes() -> None:
    with pytest.raises(RenderError, match="SecurityError") as caught:
        render("{{ mac.__class__.__mro__ }}", {"mac": "x"})
    assert caught.value.kind == "template"


def test_a_job_renders_the_command_line_first() -> None:
    values = {"mac": "m", "cmdline": "", "profile": {"name": "p", "cmdline": ""}}
    job = Job("console={{ mac }}", "{{ cmdline }} {{ profile.cmdline }}", values, "p ipxe")
    assert run(job) == "console=m console=m"
    assert values["cmdline"] == ""  # the caller's variables are left alone


async def test_inline_renderer_keeps_the_output_limit() -> None:
    inline = InlineRenderer(2.0)
    assert await inline.render(Job("", "{% for i in range(3) %}x{% endfor %}", {}, "t")) == "xxx"
    with pytest.raises(RenderError) as caught:
        await inline.render(Job("", "{{ 'a' * 10**7 }}", {}, "t"))
    assert caught.value.kind == "output"


@pytest.mark.slow
async def test_pool_kills_a_runaway_worker_and_replaces_it() -> None:
    pool = RenderPool(workers=1, timeout=1.0)
    await pool.start()
    try:
        assert await pool.render(Job("", "{{ 6 * 7 }}", {}, "ok")) == "42"
        (first,) = pool._all
        with pytest.raises(RenderError, match="render took over 1 s") as caught:
            await pool.render(Job("", RUNAWAY, {}, "runaway ipxe"))
        assert caught.value.kind == "timeout"
        (second,) = pool._all
        assert second is not first
        with pytest.raises(RenderError) as caught:
            await pool.render(Job("", "{{ 'a' * 10**7 }}", {}, "huge"))
        assert caught.value.kind == "output"
        assert await pool.render(Job("", "{{ 'fine' }}", {}, "ok")) == "fine"
    finally:
        processes = [w.process for w in pool._all]
        await pool.stop()
    assert pool._all == set()
    assert multiprocessing.active_children() == []
    for process in processes:
        with pytest.raises(ValueError):  # closed: joined and released
            process.is_alive()
