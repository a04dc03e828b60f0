"""Shipped recipes (TOML), read by distill.pipeline.recipe."""
