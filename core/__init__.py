"""Bangban (帮办): the channel-agnostic conversation core.

Adapters (``adapters/``) know channels; this package knows none. See docs/architecture.md.
"""

__version__ = "0.1.0"
