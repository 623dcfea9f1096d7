"""Simulated partner systems (hospital department, lab, municipality) answering over real HTTP."""
