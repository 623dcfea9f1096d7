"""The console reads the declarations: a pathway started by an inbound message is listed with its
own steps and words, its awaited event is reported from its page; held messages are decided on the
triage page. Real stack, logged in as a browser would be."""

from __future__ import annotations

import uuid

import pytest
from sqlmodel import select

from careflow.auth import Role
from store.models import AuditEntry, Flow, InboundMessage
from tests.api.test_inbound import appointment, post
from tests.api.test_platform import _care_communication, _flow_status, _rows
from tests.conftest import Stack, wait_for
from tests.console.conftest import console_client, csrf_of

pytestmark = pytest.mark.e2e


async def test_a_pathway_started_by_a_message_is_seen_and_finished_from_the_console(stack: Stack) -> None:
    header_id = str(uuid.uuid4())
    assert (await post(stack, _care_communication(header_id, "1212505130"))).status_code == 202
    [flow_id] = _rows(stack, select(InboundMessage.flow_id).where(InboundMessage.message_header_id == header_id))
    async with console_client(stack) as console:
        listing = await console.get("/console/flows", params={"pathway": "dialogue"})
        assert (
            listing.status_code == 200 and flow_id[:8] in listing.text and "Dialogue · korrespondance" in listing.text
        )

        async def waiting_page() -> str | None:
            page = await console.get(f"/console/flows/{flow_id}")
            return page.text if 'id="report-event"' in page.text else None

        page = await wait_for(waiting_page, timeout=30)
        assert 'data-step="answer"' in page and "Care communication" in page, (
            "the step picture comes from the declaration"
        )
        done = await console.post(
            f"/console/flows/{flow_id}/events/answered", data={"csrf_token": csrf_of(page), "reason": "svar skrevet"}
        )
        assert done.status_code == 303
    await _flow_status(stack, flow_id, "completed")
    audit = _rows(stack, select(AuditEntry.action).where(AuditEntry.flow_id == flow_id))
    assert "console-report-event:answered" in audit and "start-flow-by-message" in audit
    [flow] = _rows(stack, select(Flow).where(Flow.id == flow_id))
    assert flow.referring_sor == "100000000000001" and flow.receiving_sor == "200000000000001"


async def test_held_messages_are_decided_on_the_triage_page(stack: Stack) -> None:
    assert (await post(stack, appointment(str(uuid.uuid4()), cpr="1212505131"))).status_code == 202
    [row] = _rows(
        stack,
        select(InboundMessage)
        .where(InboundMessage.delivery_status == "triage")
        .order_by(InboundMessage.id.desc())
        .limit(1),
    )
    async with console_client(stack) as console:
        page = await console.get("/console/triage")
        assert (
            page.status_code == 200
            and f'data-message-id="{row.id}"' in page.text
            and "matches no flow careflow knows" in page.text
        )
        no_reason = await console.post(
            f"/console/triage/{row.id}/reject", data={"csrf_token": csrf_of(page.text), "reason": " "}
        )
        assert no_reason.status_code == 303
        bad_csrf = await console.post(f"/console/triage/{row.id}/reject", data={"csrf_token": "forged", "reason": "x"})
        assert bad_csrf.status_code == 403
        rejected = await console.post(
            f"/console/triage/{row.id}/reject", data={"csrf_token": csrf_of(page.text), "reason": "no such order here"}
        )
        assert rejected.status_code == 303
        after = await console.get("/console/triage")
        assert f'data-message-id="{row.id}"' not in after.text
    [decided] = _rows(stack, select(InboundMessage).where(InboundMessage.id == row.id))
    assert (decided.delivery_status, decided.ack_code, decided.triaged_by) == (
        "rejected",
        "fatal-error",
        "test-coordinator",
    )


async def test_events_beside_the_steps_are_drawn_apart_and_reportable(stack: Stack) -> None:
    """stay: its updates and end may be reported at any time; they are drawn beside the sequence."""
    body = {"patient": {"cpr": "0303505124"}, "hospital_sor": "100000000000001", "municipality_sor": "400000000000001"}
    started = await stack.api.post(
        "/pathways/stay/flows", json=body, headers=stack.headers(Role.CLINICIAN, "100000000000001")
    )
    flow_id = started.json()["id"]
    async with console_client(stack) as console:

        async def page_text() -> str | None:
            page = await console.get(f"/console/flows/{flow_id}")
            return page.text if 'class="steps-beside"' in page.text and 'data-event="update"' in page.text else None

        text = await wait_for(page_text, timeout=40)
        assert 'data-event="end"' in text
        beside = text.split('class="steps-beside"', 1)[1].split("</ul>", 1)[0]
        assert 'data-step="update"' in beside and 'data-step="question"' in beside
        assert 'data-step="notice"' not in beside
        done = await console.post(
            f"/console/flows/{flow_id}/events/update", data={"csrf_token": csrf_of(text), "reason": "orlov"}
        )
        assert done.status_code == 303
    audit = _rows(stack, select(AuditEntry.action).where(AuditEntry.flow_id == flow_id))
    assert "console-report-event:update" in audit
