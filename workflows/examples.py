"""Synthetic inputs for the demo and `make run`: patients that belong to nobody."""

from __future__ import annotations

import random

GIVEN = ["Anna", "Mads", "Sofie", "Oliver", "Ida", "Lucas", "Freja", "Emil", "Karla", "Noah"]
FAMILY = ["Testesen", "Prøvesen", "Demosen", "Eksempelsen", "Syntetisk"]
# The demo directory's first entries (messaging/data/demo-directory.json).
DEMO_GP, DEMO_HOSPITAL, DEMO_LAB, DEMO_MUNICIPALITY = (
    "100000000000001",
    "200000000000001",
    "300000000000001",
    "400000000000001",
)


def synthetic_cpr(rng: random.Random) -> str:
    """A valid-format CPR that belongs to nobody: 7th digit 5-8 with year 27-57 means born 2027-2057."""
    day, month, year = rng.randint(1, 28), rng.randint(1, 12), rng.randint(30, 57)
    return f"{day:02d}{month:02d}{year:02d}{rng.randint(5, 8)}{rng.randint(0, 999):03d}"


def synthetic_patient(rng: random.Random) -> dict:
    return {"cpr": synthetic_cpr(rng), "given_name": rng.choice(GIVEN), "family_name": rng.choice(FAMILY)}
