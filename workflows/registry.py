"""The pathways careflow knows: name → workflow class and workflow id prefix."""

from __future__ import annotations

from dataclasses import dataclass

from workflows.referral import ReferralPathwayWorkflow
from workflows.steps import PathwayWorkflow


@dataclass(frozen=True)
class PathwayDefinition:
    name: str
    workflow: type[PathwayWorkflow]
    title: str
    title_da: str

    def workflow_id(self, flow_id: str) -> str:
        # Never patient data: the flow id is a random UUID.
        return f"{self.name}-{flow_id}"


PATHWAYS: dict[str, PathwayDefinition] = {
    "referral": PathwayDefinition("referral", ReferralPathwayWorkflow, "Referral", "Henvisning"),
}

WORKFLOWS = [definition.workflow for definition in PATHWAYS.values()]
