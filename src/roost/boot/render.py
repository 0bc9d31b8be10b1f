"""Rendering of per-node boot documents from profile templates in a Jinja2 sandbox.

Templates come from operators through the API, and their output is read by machines that trust
it, so they run in :class:`jinja2.sandbox.ImmutableSandboxedEnvironment`: no attribute
starting with ``_``, no mutation of the values passed in, bounded ``range``, and ``*``/``**``
that refuse to build a string, list or number larger than the output limit. Output is produced
chunk by chunk and the render stops once it passes ``max_output`` characters. Unknown variables
are errors (``StrictUndefined``), so a typo fails the render instead of booting a node with an
empty command line. Compiled templates are cached by their source text.

This module renders in the calling thread; :mod:`roost.boot.render_pool` runs it in worker
processes with a time limit, so a runaway template never holds the event loop.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Any, Literal, get_args

from jinja2 import StrictUndefined, Template, TemplateSyntaxError
from jinja2.exceptions import SecurityError
from jinja2.runtime import Context
from jinja2.sandbox import ImmutableSandboxedEnvironment

from roost.errors import Invalid, RoostError

TemplateKind = Literal["ipxe", "user-data", "meta-data", "preseed", "kickstart"]
TEMPLATE_KINDS: tuple[TemplateKind, ...] = get_args(TemplateKind)

DEFAULT_IPXE = """\
#!ipxe
# Roost: profile {{ profile.name }} for {{ mac }} ({{ hostname }})
kernel {{ kernel_url }}
{%- for n in initrd_names %} initrd={{ n }}{% endfor %} {{ cmdline }} || goto failed
{% for url in initrd_urls %}
initrd {{ url }} || goto failed
{% endfor %}
boot || goto failed
:failed
echo Roost: booting profile {{ profile.name }} failed; trying again in 10 seconds
sleep 10
chain --replace --autofree {{ script_url }}
"""
"""The iPXE script of a profile with a kernel and no ``ipxe`` template of its own.
``initrd=<name>`` lets the EFI stub of the kernel find each initrd that iPXE registered."""

LOCAL_IPXE = """\
#!ipxe
# Roost: {{ mac }} ({{ hostname }}) boots from its local disk (profile local)
{% if arch == "bios" %}
sanboot --no-describe --drive 0x80 || exit
{% else %}
exit
{% endif %}
"""
"""Boot from disk: BIOS iPXE hands over to the first disk; UEFI returns to the firmware,
which goes on to its next boot entry."""

DEFAULT_META_DATA = """\
instance-id: roost-{{ mac | replace(":", "") }}
local-hostname: {{ hostname }}
"""
"""cloud-init NoCloud meta-data when a profile has none: enough for cloud-init to run."""

_CACHE_SIZE = 256
MAX_OUTPUT = 2**20
"""Default output limit, in characters (``boot.render_max_output``)."""
MAX_POWER_BITS = 4096
"""Largest integer ``**`` may build: big enough for any address or size arithmetic, small
enough that ``10**10**7`` does not take the worker's whole time limit."""

RenderFailure = Literal["template", "timeout", "output", "busy", "crash"]


class RenderError(RoostError):
    """A template failed at render time: ``kind`` says how (``template``: sandbox violation,
    unknown variable, bad filter; ``timeout``, ``output``: a limit; ``busy``: no renderer free;
    ``crash``: the worker died)."""

    status = 500
    title = "Template error"

    def __init__(self, detail: str, kind: RenderFailure = "template") -> None:
        super().__init__(detail)
        self.kind: RenderFailure = kind
        if kind == "busy":
            self.status = 503


class OutputLimit(SecurityError):
    """A render produced, or an operator would build, more than the output limit."""


class BoundedSandbox(ImmutableSandboxedEnvironment):
    """The immutable sandbox with ``*`` and ``**`` bounded (they build huge values in one
    step, which no time limit of the render loop catches before the memory is gone)."""

    intercepted_binops = frozenset({"*", "**"})
    max_output = MAX_OUTPUT

    def call_binop(self, context: Context, operator: str, left: Any, right: Any) -> Any:
        if operator == "*":
            for seq, count in ((left, right), (right, left)):
                sized = isinstance(seq, str | bytes | list | tuple)
                if sized and isinstance(count, int) and len(seq) * count > self.max_output:
                    raise OutputLimit(f"'*' would build more than {self.max_output} items")
        big = isinstance(left, int) and isinstance(right, int) and abs(left) > 1
        if operator == "**" and big and right * left.bit_length() > MAX_POWER_BITS:
            raise OutputLimit(f"'**' would build an integer over {MAX_POWER_BITS} bits")
        return super().call_binop(context, operator, left, right)


_ENV = BoundedSandbox(
    undefined=StrictUndefined,
    autoescape=False,
    trim_blocks=True,
    lstrip_blocks=True,
    keep_trailing_newline=True,
)
_compiled: OrderedDict[str, Template] = OrderedDict()


def compile_template(source: str, what: str = "template") -> Template:
    """Compile (or fetch from the cache); a syntax error becomes :class:`Invalid`."""
    found = _compiled.get(source)
    if found is not None:
        _compiled.move_to_end(source)
        return found
    try:
        template = _ENV.from_string(source)
    except TemplateSyntaxError as exc:
        raise Invalid(f"{what}: line {exc.lineno}: {exc.message}") from None
    _compiled[source] = template
    if len(_compiled) > _CACHE_SIZE:
        _compiled.popitem(last=False)
    return template


def render(
    source: str, variables: dict[str, Any], what: str = "template", max_output: int = MAX_OUTPUT
) -> str:
    """Render ``source`` with ``variables`` in the sandbox, stopping past ``max_output``
    characters; any failure is a RenderError."""
    template = compile_template(source, what)
    _ENV.max_output = max_output
    chunks: list[str] = []
    size = 0
    try:
        for chunk in template.generate(variables):
            size += len(chunk)
            if size > max_output:
                raise OutputLimit(f"output passed the limit of {max_output} characters")
            chunks.append(chunk)
    except OutputLimit as exc:
        raise RenderError(f"{what}: {exc}", "output") from None
    except MemoryError:
        raise RenderError(f"{what}: out of memory", "output") from None
    except Exception as exc:  # SecurityError, UndefinedError, and whatever a filter raises
        raise RenderError(f"{what}: {type(exc).__name__}: {exc}") from None
    return "".join(chunks)
