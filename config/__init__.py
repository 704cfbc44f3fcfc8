"""Shipped configuration and reference data (YAML). A package only so that wheels carry it."""
