"""The pathways of docs/adding-a-pathway.md: real modules, run by tests/workflows/test_tutorial_pathways.py."""
