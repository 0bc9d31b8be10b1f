"""Rendering of per-node boot documents from profile templates in a Jinja2 sandbox.

Templates come from operators through the API, and their output is read by machines that trust
it, so they run in :class:`jinja2.sandbox.ImmutableSandboxedEnvironment`: no attribute
starting with ``_``, no mutation of the values passed in, bounded ``range``. Unknown variables
are errors (``StrictUndefined``), so a typo fails the render instead of booting a node with an
empty command line. Compiled templates are cached by their source text.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Any, Literal, get_args

from jinja2 import StrictUndefined, Template, TemplateSyntaxError
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


class RenderError(RoostError):
    """A template failed at render time (sandbox violation, unknown variable, bad filter)."""

    status = 500
    title = "Template error"


_ENV = ImmutableSandboxedEnvironment(
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


def render(source: str, variables: dict[str, Any], what: str = "template") -> str:
    """Render ``source`` with ``variables`` in the sandbox; any failure is a RenderError."""
    template = compile_template(source, what)
    try:
        return str(template.render(variables))
    except Exception as exc:  # SecurityError, UndefinedError, and whatever a filter raises
        raise RenderError(f"{what}: {type(exc).__name__}: {exc}") from None
