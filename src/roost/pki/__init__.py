"""Roost's certificate authority: the CA, one-time enrollment tokens, node certificates,
signed node requests and revocation. See docs/nodes.md for the trust model.

The boot renderer calls :func:`issue_enrollment_token` to put ``roost.token=<token>`` on a
kernel command line.
"""

from roost.pki.tokens import issue_enrollment_token

__all__ = ["issue_enrollment_token"]
