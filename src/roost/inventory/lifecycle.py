"""The node lifecycle as one transition table, and nothing else.

Theory of operation: a node is born ``discovered`` (seen on the network, or added by hand).
Enrollment moves it through ``enrolling`` (a valid one-time token was presented) to ``ready``
(Roost knows its facts and, with a CSR, it holds a certificate); with ``enroll.approve`` it
waits in ``pending`` between the two until an operator approves (or rejects: ``discovered``).
Deployment moves it through ``deploying`` to ``deployed``. ``broken`` is where an operator or
a failed step parks a machine; ``retired`` is the end of its life (its certificates are
revoked), from which only rediscovery brings it back. Every other move is refused with the
list of moves that are allowed, so a caller learns what to do instead. Moving to the state a
node is already in is a no-op.
"""

from __future__ import annotations

from enum import StrEnum

from roost.errors import Invalid


class State(StrEnum):
    discovered = "discovered"
    enrolling = "enrolling"
    pending = "pending"
    ready = "ready"
    deploying = "deploying"
    deployed = "deployed"
    broken = "broken"
    retired = "retired"


_S = State

TRANSITIONS: dict[State, frozenset[State]] = {
    _S.discovered: frozenset({_S.enrolling, _S.ready, _S.broken, _S.retired}),
    _S.enrolling: frozenset({_S.ready, _S.pending, _S.discovered, _S.broken, _S.retired}),
    _S.pending: frozenset({_S.ready, _S.discovered, _S.broken, _S.retired}),
    _S.ready: frozenset({_S.enrolling, _S.deploying, _S.broken, _S.retired}),
    _S.deploying: frozenset({_S.deployed, _S.ready, _S.broken, _S.retired}),
    _S.deployed: frozenset({_S.deploying, _S.ready, _S.enrolling, _S.broken, _S.retired}),
    _S.broken: frozenset({_S.discovered, _S.enrolling, _S.ready, _S.retired}),
    _S.retired: frozenset({_S.discovered}),
}
"""state → the states it may move to. Re-enrolling (``ready``/``deployed`` → ``enrolling``)
is allowed: a reinstalled machine enrolls again with a fresh token."""

ENROLLABLE = frozenset({_S.discovered, _S.enrolling, _S.ready, _S.deployed, _S.broken})
"""States from which a presented enrollment token is accepted (``pending`` waits for an
operator; ``deploying`` for its deployment to end; ``retired`` for rediscovery)."""

MINTABLE = frozenset({_S.discovered, _S.broken})
"""States in which ``enroll.auto = "new"`` mints a token for an anonymous boot render."""


def parse_state(value: str) -> State:
    try:
        return State(value)
    except ValueError:
        raise Invalid(
            f"unknown state {value!r}; states are: {', '.join(s.value for s in State)}"
        ) from None


def check(current: State, target: State) -> bool:
    """True when the move changes state, False for a no-op; raise Invalid when not allowed."""
    if current == target:
        return False
    if target not in TRANSITIONS[current]:
        allowed = ", ".join(sorted(TRANSITIONS[current]))
        raise Invalid(
            f"a {current} node cannot become {target}; from {current} it may become: {allowed}"
        )
    return True
