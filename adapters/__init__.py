"""Channel adapters: one package per citizen channel, found through the ``bangban.adapters``
entry-point group (see docs/adapters.md)."""
