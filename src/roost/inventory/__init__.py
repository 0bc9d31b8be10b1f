"""The inventory: every machine Roost manages as one node model with a lifecycle.

``models`` (tables), ``lifecycle`` (the transition table), ``store`` (operations in a
session), ``nodes`` (operations for the API: commit, then publish), ``catalog`` (sites, tags),
``transfer`` (CSV/JSON import and export), ``power``/``powerops`` (the power driver seam) and
``service`` (nodes appearing from DHCP, discovery and boot events).
"""
