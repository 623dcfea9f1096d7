"""A home-care request: the GP asks the patient's municipality for home care and awaits its answer,
with a message type of its own (tutorial, part 2)."""

from __future__ import annotations

from datetime import date, timedelta

from pydantic import BaseModel, Field
from temporalio import workflow

with workflow.unsafe.imports_passed_through():
    from messaging.model import MessageKind
    from messaging.resources import BuildContext, ref, service_request_identifier
    from messaging.terminology import CAREFLOW_EVENT_SYSTEM
    from messaging.types import MESSAGE_TYPES, MessageType
    from workflows.declare import AwaitReply, Party, Send
    from workflows.examples import DEMO_GP, synthetic_patient
    from workflows.models import PathwayStart, Timings
    from workflows.steps import PathwayWorkflow

# --- the message type: its content, how it is built, its words --------------------------------

HOME_CARE_REQUEST = "careflow-home-care-request-message"


class HomeCareRequestContent(BaseModel):
    service_request_id: str  # the pathway's id: the municipality's answer refers to it
    need: str
    start: date


def build(ctx: BuildContext, content: HomeCareRequestContent) -> tuple[list[dict], list[dict]]:
    request = {
        "resourceType": "ServiceRequest",
        "id": ctx.id("service-request"),
        "identifier": [service_request_identifier(content.service_request_id)],
        "status": "active",
        "intent": "order",
        "code": {"text": "Hjemmepleje"},
        "subject": ctx.patient_ref,
        "occurrenceDateTime": content.start.isoformat(),
        "requester": {"reference": ref(ctx.sender)},
        "performer": [{"reference": ref(ctx.receiver)}],
        "note": [{"text": content.need}],
    }
    return [request], []


MESSAGE_TYPES.register(
    MessageType(
        code=HOME_CARE_REQUEST,
        system=CAREFLOW_EVENT_SYSTEM,  # careflow's own code system: never MedCom's
        label="home-care request",
        label_da="anmodning om hjemmepleje",
        focus="ServiceRequest",
        content=HomeCareRequestContent,
        build=build,
    )
)

# --- the pathway -----------------------------------------------------------------------------


class HomeCareRequestInput(PathwayStart):
    gp_sor: str = Field(pattern=r"^\d{6,18}$", description="SOR code of the GP")
    municipality_sor: str | None = Field(
        default=None, pattern=r"^\d{6,18}$", description="default: the directory's municipality"
    )
    need: str = Field(min_length=1, max_length=2000)
    start: date


class HomeCareRequestTimings(Timings):
    answer_deadline: timedelta = timedelta(days=5)


@workflow.defn
class HomeCareRequestPathway(PathwayWorkflow):
    """A home-care request to the municipality; its answer (a CareCommunication) is due in five days."""

    name = "home-care-request"
    title, title_da = "Home-care request", "Anmodning om hjemmepleje"
    input_model = HomeCareRequestInput
    timings_model = HomeCareRequestTimings
    parties = (
        Party("requester", "GP", field="gp_sor"),
        Party("performer", "municipality", field="municipality_sor", directory_kind="municipality"),
    )
    steps = (
        Send("request", HOME_CARE_REQUEST, to="performer"),
        AwaitReply("answer", MessageKind.CARE_COMMUNICATION, sender="performer", deadline="answer_deadline"),
    )

    @classmethod
    def example(cls, rng):  # noqa: ANN001, ANN206
        return {
            "patient": synthetic_patient(rng),
            "gp_sor": DEMO_GP,
            "need": "Hjælp til medicin morgen og aften",
            "start": date.today().isoformat(),
        }
