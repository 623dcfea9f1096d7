"""Admission and discharge to municipal home care: a hospital stay's HospitalNotifications (MedCom
3.0.2) to the patient's home municipality, and the municipality's CareCommunication dialogue."""

from __future__ import annotations

import hashlib
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

from temporalio import workflow

with workflow.unsafe.imports_passed_through():
    from messaging.hospital_stay import (
        ADMISSION,
        CANCEL,
        DEATH,
        DISCHARGE,
        LEAVE_END,
        LEAVE_START,
        REVISE,
        EventData,
        Refused,
        Sent,
        Stay,
        StayAdmission,
    )
    from messaging.identifiers import SOR_ENDPOINT_PREFIX
    from messaging.model import MessageKind
    from messaging.types.care_communication import CATEGORIES, CareCommunicationContent
    from messaging.types.hospital_notification import HospitalNotificationContent
    from workflows.declare import AwaitEvent, OnEvent, OnMessage, Party, Send, SendContext
    from workflows.examples import DEMO_MUNICIPALITY, synthetic_patient
    from workflows.inputs import HospitalStayInput, HospitalStayTimings
    from workflows.models import PathwayInput
    from workflows.steps import PathwayWorkflow

HN = MessageKind.HOSPITAL_NOTIFICATION.value
CC = MessageKind.CARE_COMMUNICATION.value
# The demo's hospital department that careflow sends for (its acknowledgements and the
# municipality's messages come back to careflow): the demo directory's emergency department.
DEMO_ADMITTING_HOSPITAL = "200000000000002"
CANCEL_ADMISSION = "cancel-admission"
STAY_EVENTS = (LEAVE_START, LEAVE_END, DISCHARGE, DEATH, REVISE, CANCEL, CANCEL_ADMISSION)


# ----- the stay, from what the pathway has sent and been told --------------------------------------


def _admission(pathway_input: PathwayInput) -> StayAdmission:
    data = pathway_input.data
    return StayAdmission(
        admitted_at=data["admitted_at"],
        acute_ambulant=bool(data.get("acute_ambulant")),
        encounter_id=pathway_input.flow_id,
        episode_of_care_id=pathway_input.flow_id,  # a local UUID for this stay (MedCom: system = sender's SOR)
        report_of_admission=bool(data.get("report_of_admission")),
    )


def _hospital(pathway_input: PathwayInput) -> str:
    return pathway_input.parties["hospital"].sor


def _stay(ctx: SendContext) -> Stay:
    """The stay after every notification sent or already reported: reports are taken in order, so
    one still being sent is planned with a stand-in header id (only its content's state matters)."""
    admission = _admission(ctx.input)
    notices = [o for o in ctx.sent if o.kind == HN]
    reports = [r for r in ctx.reported if r.event in STAY_EVENTS]
    first = notices[0] if notices else None
    sent = [
        Sent(
            first.message_header_id if first else "pending-admission",
            (first.first_sent_at if first and first.first_sent_at else admission.admitted_at),
            ADMISSION,
            {},
        )
    ]
    for k, report in enumerate(reports, start=1):
        notice = notices[k] if k < len(notices) else None
        at = report.reported_at or ctx.now
        sent.append(
            Sent(
                notice.message_header_id if notice else f"pending-{k}",
                notice.first_sent_at if notice and notice.first_sent_at else at,
                CANCEL if report.event == CANCEL_ADMISSION else report.event,
                report.data,
                at,
            )
        )
    return Stay(admission, sent, _hospital(ctx.input))


def _event_of(name: str) -> str:
    return CANCEL if name == CANCEL_ADMISSION else name


def admission_notice(pathway_input: PathwayInput) -> HospitalNotificationContent:
    """STIN (or STAA): the stay's first notification."""
    return Stay(_admission(pathway_input), [], _hospital(pathway_input)).admission_content()


def notice(event: str):  # noqa: ANN201
    """The content builder of a stay event: the HospitalNotification MedCom's table gives for it."""

    def content(ctx: SendContext) -> HospitalNotificationContent:
        return _stay(ctx).plan(_event_of(event), ctx.event, ctx.reported_at or ctx.now).content

    content.__name__ = f"{event.replace('-', '_')}_notice"
    return content


def refusal(event: str):  # noqa: ANN201
    """Why the stay does not allow this report now (the API answers 409 with it), or None."""

    def refuse(ctx: SendContext) -> str | None:
        stay = _stay(ctx)
        current = stay.current
        if current is not None and event == CANCEL and current.event == ADMISSION:
            return f"the latest notice in force is the admission: report {CANCEL_ADMISSION} to cancel it"
        if current is not None and event == CANCEL_ADMISSION and current.event != ADMISSION:
            return "only an admission with no later notice in force can be cancelled: cancel the later ones first"
        try:
            stay.plan(_event_of(event), ctx.event, ctx.now)
        except Refused as err:
            return str(err)
        return None

    refuse.__name__ = f"refuse_{event.replace('-', '_')}"
    return refuse


def late(ctx: SendContext) -> str | None:
    """MedCom's real-time rule: an event reported longer after it happened than report_within."""
    return _late(EventData.model_validate(ctx.event or {}).at, ctx)


def admitted_late(ctx: SendContext) -> str | None:
    """The same rule for the admission: the pathway started that long after the patient arrived."""
    return _late(_admission(ctx.input).admitted_at, ctx)


def _late(at: datetime | None, ctx: SendContext) -> str | None:
    reported = ctx.reported_at or ctx.now
    limit = HospitalStayTimings.model_validate(ctx.input.timings).report_within
    if at is not None and reported - at > limit:
        minutes = int((reported - at).total_seconds() // 60)
        return (
            f"reported {minutes} minutes after it happened: MedCom's HospitalNotification is sent in real time "
            f"(careflow's limit {int(limit.total_seconds() // 60)} minutes)"
        )
    return None


# ----- the dialogue --------------------------------------------------------------------------------


def _thread_id(ctx: SendContext) -> str:
    """A new thread's id: a version-4 UUID derived from the flow and the count of messages sent, so
    building it again (a resend, a replay) gives the same id."""
    digest = hashlib.sha256(f"{ctx.input.flow_id}/thread/{len(ctx.sent)}".encode()).digest()
    return str(uuid.UUID(bytes=digest[:16], version=4))


def _about_the_stay(ctx: SendContext) -> dict[str, Any]:
    return {
        "episode_of_care_id": ctx.input.flow_id,
        "episode_of_care_system": SOR_ENDPOINT_PREFIX + _hospital(ctx.input),
        "encounter_status": _stay(ctx).status,
        "encounter_class": "EMER" if ctx.input.data.get("acute_ambulant") else "IMP",
    }


def _latest_from_municipality(ctx: SendContext):  # noqa: ANN202
    municipality = ctx.input.parties["municipality"].sor
    return next((m for m in reversed(ctx.received) if m.kind == CC and m.sender_sor == municipality), None)


def _words(ctx: SendContext) -> dict[str, str]:
    """The message's category (default carecoordination) and, for the category other, its topic."""
    words = {"category": str(ctx.event.get("category") or "carecoordination")}
    if ctx.event.get("topic"):
        words["topic"] = str(ctx.event["topic"])
    return words


def write(ctx: SendContext) -> CareCommunicationContent:
    """The department writes to the municipality: a new thread about the stay."""
    return CareCommunicationContent(
        communication_id=_thread_id(ctx),
        text=str(ctx.event.get("text") or "Vi har et spørgsmål vedrørende borgerens forløb."),
        **_words(ctx),
        **_about_the_stay(ctx),
    )


def bad_words(ctx: SendContext) -> str | None:
    """A CareCommunication's words MedCom would refuse: an unknown category, other without a topic."""
    words = _words(ctx)
    if words["category"] not in CATEGORIES:
        return f"category must be one of MedCom's CareCommunication categories: {', '.join(CATEGORIES)}"
    if words["category"] == "other" and not words.get("topic"):
        return "a message of category other needs a topic"
    if len(str(ctx.event.get("text") or "")) > 10000:
        return "text is longer than 10000 characters"
    return None


def reply(ctx: SendContext) -> CareCommunicationContent:
    """The department answers the municipality's latest message, in its thread."""
    question = _latest_from_municipality(ctx)
    assert question is not None  # refused otherwise
    return CareCommunicationContent(
        communication_id=question.thread_id or _thread_id(ctx),
        text=str(ctx.event.get("text") or "Tak for henvendelsen. Vi vender tilbage ved udskrivelsen."),
        **_words(ctx),
        previous_header_id=question.message_header_id,
        **_about_the_stay(ctx),
    )


def nothing_to_answer(ctx: SendContext) -> str | None:
    if _latest_from_municipality(ctx) is None:
        return "the municipality has written nothing to answer: write a new message instead"
    return bad_words(ctx)


def _on(event: str, title: str, **kwargs: Any) -> OnEvent:
    return OnEvent(
        event,
        event=event,
        message=HN,
        to="municipality",
        content=notice(event),
        title=title,
        after="admission",
        refuse=refusal(event),
        # a correction names an earlier time by nature; a cancellation names none
        late=late if event in (LEAVE_START, LEAVE_END, DISCHARGE, DEATH) else None,
        **kwargs,
    )


@workflow.defn
class HospitalNotificationPathway(PathwayWorkflow):
    """A hospital stay told to the patient's home municipality (advis om sygehusophold).

    Sends: the admission (STIN, or STAA acute ambulant) at start; then, for each event the
    hospital's system reports, the matching HospitalNotification — leave start (STOR) and end (SLOR),
    discharge home (SLHJ), death (MORS), a correction of the latest notice (RE_xx) and its
    cancellation (AN_xx; cancel-admission ends the pathway) — each carrying the Provenance of every
    earlier message; CareCommunications the department writes or answers. Awaits: each message's
    acknowledgement (30 min, 2 resends, then escalation; fatal-error escalates at once), the
    municipality's CareCommunications, each answered within a day or escalated, and the stay's close.
    Escalates: an admission or event reported more than 15 minutes after it happened (MedCom: real
    time).
    Refuses (409): what the standard's governance forbids (future-dated events, a leave outside an
    inpatient stay, a discharge while on leave, corrections of anything but the latest notice).
    Timings: CAREFLOW_PATHWAYS__HOSPITAL_NOTIFICATION__<FIELD>.
    """

    name = "hospital-notification"
    title, title_da = "Hospital stay to the municipality", "Advis om sygehusophold"
    input_model = HospitalStayInput
    timings_model = HospitalStayTimings
    acting_for = "hospital"
    counterpart = "municipality"
    cancellation = None  # a stay is withdrawn by AN_STIN (cancel-admission), not by careflow's own message
    parties = (
        Party("hospital", "hospital department", field="hospital_sor", kind="hospital-department"),
        Party("municipality", "home municipality", field="municipality_sor", directory_kind="municipality"),
    )
    steps = (
        Send("admission", HN, to="municipality", content=admission_notice, late=admitted_late),
        AwaitEvent("closed", event="close", title="stay closed"),
    )
    alongside = (
        _on(LEAVE_START, "leave started"),
        _on(LEAVE_END, "leave ended"),
        _on(DISCHARGE, "discharged home"),
        _on(DEATH, "patient died"),
        _on(REVISE, "latest notice corrected"),
        _on(CANCEL, "latest notice cancelled"),
        _on(CANCEL_ADMISSION, "admission cancelled", ends=True),
        OnMessage("municipality-writes", CC, sender="municipality", answer="reply", deadline="answer_deadline"),
        OnEvent(
            "reply",
            event="reply",
            message=CC,
            to="municipality",
            content=reply,
            title="answer to the municipality",
            after="admission",
            refuse=nothing_to_answer,
        ),
        OnEvent(
            "write",
            event="write",
            message=CC,
            to="municipality",
            content=write,
            title="message to the municipality",
            after="admission",
            refuse=bad_words,
        ),
    )

    @classmethod
    def example(cls, rng):  # noqa: ANN001, ANN206
        return {
            "patient": synthetic_patient(rng),
            "hospital_sor": DEMO_ADMITTING_HOSPITAL,
            "municipality_sor": DEMO_MUNICIPALITY,
            "admitted_at": (datetime.now(UTC) - timedelta(minutes=rng.randint(1, 10))).isoformat(),
        }

    @classmethod
    def demo_events(cls, rng):  # noqa: ANN001, ANN206
        # admitted, on leave, back, (a corrected return now and then), a message, discharged
        script: list[tuple[str, dict[str, Any]]] = [(LEAVE_START, {}), (LEAVE_END, {})]
        if rng.random() < 0.3:
            script.append((REVISE, {}))
        script += [("write", {"text": "Hvilke hjælpemidler skal være klar ved udskrivelsen?"}), (DISCHARGE, {})]
        return script
