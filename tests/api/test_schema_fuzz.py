"""Schemathesis over the running API's OpenAPI schema: every operation, valid and invalid input,
with a valid token for each role, against the real stack. Zero 5xx; bounded (a few hundred calls).
(Negative cases include schemathesis dropping the Authorization header: those answer 401.)"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from dataclasses import dataclass, field

import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode

from careflow.auth import Role
from tests.conftest import Stack, token

pytestmark = pytest.mark.e2e

PARTNER_SOR = "200000000000001"

EXAMPLES = {GenerationMode.POSITIVE: 25, GenerationMode.NEGATIVE: 15}  # per operation


@dataclass
class Tally:
    operations: list[str] = field(default_factory=list)
    statuses: Counter = field(default_factory=Counter)
    server_errors: list[str] = field(default_factory=list)

    @property
    def examples(self) -> int:
        return sum(self.statuses.values())


def fuzz(spec: dict, base_url: str, headers: dict[Role, dict[str, str]]) -> Tally:
    """Runs in a worker thread: schemathesis calls are blocking, the API serves on the test's loop."""
    schema = schemathesis.openapi.from_dict(spec)
    tally = Tally()
    http = requests.Session()
    for result in schema.get_all_operations():
        operation = result.ok()
        tally.operations.append(f"{operation.method.upper()} {operation.path}")
        for mode, count in EXAMPLES.items():

            @settings(
                max_examples=count,
                deadline=None,
                database=None,
                derandomize=True,
                phases=[Phase.explicit, Phase.generate],
                suppress_health_check=list(HealthCheck),
            )
            @given(case=operation.as_strategy(generation_mode=mode), role=st.sampled_from(list(Role)))
            def call(case, role: Role) -> None:  # noqa: ANN001
                response = case.call(base_url=base_url, session=http, headers=headers[role], timeout=30)
                tally.statuses[response.status_code] += 1
                if response.status_code >= 500:
                    tally.server_errors.append(
                        f"{case.method} {case.formatted_path} as {role.value}: {response.status_code} "
                        f"{response.text[:200]}"
                    )

            try:
                call()
            except Unsatisfiable:
                assert mode is GenerationMode.NEGATIVE, (
                    f"no valid input for {operation.label}"
                )  # e.g. /healthz: nothing to get wrong
    return tally


async def test_no_operation_answers_5xx_to_any_role(stack: Stack) -> None:
    spec = (await stack.api.get("/openapi.json")).json()
    headers = {
        role: {"Authorization": f"Bearer {token(stack.settings, role, PARTNER_SOR if role is Role.PARTNER else None)}"}
        for role in Role
    }
    started = time.monotonic()
    tally = await asyncio.to_thread(fuzz, spec, stack.settings.public_url, headers)
    elapsed = time.monotonic() - started
    print(
        f"\nschemathesis: {len(tally.operations)} operations, {tally.examples} examples, {len(tally.server_errors)} "
        f"5xx in {elapsed:.1f}s; statuses {dict(sorted(tally.statuses.items()))}"
    )
    assert len(tally.operations) == len(spec["paths"]) + sum(len(m) - 1 for m in spec["paths"].values()), (
        "every operation"
    )
    assert tally.examples >= 5 * len(tally.operations)
    assert not tally.server_errors, "\n".join(tally.server_errors[:10])
