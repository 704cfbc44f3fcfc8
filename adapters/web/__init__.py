"""PC portal (一网通办) chat widget channel."""
