"""Temporal activities: everything that touches the world (HTTP, database), grouped by what they touch."""
