"""Temporal workflow definitions: one pathway per module, shared step helpers, a registry."""
