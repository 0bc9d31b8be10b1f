"""Roost's read-only TFTP server, the first hop of a firmware network boot.

``codec`` (packets), ``session`` (one transfer as a sans-IO state machine with time injected),
``files`` and ``resolver`` (what is served, and the traversal rules), ``transfer`` and
``server`` (the thin asyncio transport), ``worker`` (transfers in other processes), and
``service`` (settings in, events out). See docs/tftp.md.
"""
