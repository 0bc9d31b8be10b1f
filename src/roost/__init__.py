"""Roost: a lean bare-metal cluster platform.

One Python service that discovers machines, boots them, keeps an inventory, enrolls them into a
mesh and configures them from a signed desired state.
"""

__version__ = "0.1.0"
