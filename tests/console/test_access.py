"""Who may enter the console, and that a POST without the session's CSRF token changes nothing."""

from __future__ import annotations

import httpx
import pytest
from temporalio.client import WorkflowHandle

from careflow.auth import Role
from store.models import Escalation
from tests.conftest import Stack, token, wait_for
from tests.console.conftest import console_client, csrf_of, read_audit, read_escalations
from workflows.referral import ReferralPathwayWorkflow

pytestmark = pytest.mark.e2e


async def _login(client: httpx.AsyncClient, bearer: str) -> httpx.Response:
    form = await client.get("/console/login")
    return await client.post("/console/login", data={"token": bearer, "csrf_token": csrf_of(form.text)})


async def test_unauthenticated_pages_redirect_to_login(stack: Stack) -> None:
    async with httpx.AsyncClient(base_url=stack.settings.public_url) as client:
        for path in ("/console", "/console/flows", "/console/flows/x", "/console/escalations"):
            response = await client.get(path)
            assert response.status_code == 303 and response.headers["location"] == "/console/login", path
        # The list's auto-refresh gets a 401 (the page then reloads to the login form).
        assert (await client.get("/console/flows/table", headers={"X-Console-Fragment": "1"})).status_code == 401
        login = await client.get("/console/login")
        assert login.status_code == 200 and "Paste your careflow token" in login.text
        assert "default-src 'self'" in login.headers["content-security-policy"]


@pytest.mark.parametrize(("role", "sor"), [(Role.CLINICIAN, None), (Role.PARTNER, "200000000000001")])
async def test_clinician_and_partner_cannot_log_in(stack: Stack, role: Role, sor: str | None) -> None:
    async with httpx.AsyncClient(base_url=stack.settings.public_url) as client:
        response = await _login(client, token(stack.settings, role, sor))
        assert response.status_code == 403
        assert f"A {role.value} token cannot open the coordinator console" in response.text
        assert (await client.get("/console")).status_code == 303  # still not in


async def test_forged_token_and_missing_login_csrf_are_refused(stack: Stack) -> None:
    async with httpx.AsyncClient(base_url=stack.settings.public_url) as client:
        response = await _login(client, "cf1.forged.token")
        assert response.status_code == 401 and "not accepted" in response.text
    async with httpx.AsyncClient(base_url=stack.settings.public_url) as client:
        response = await client.post("/console/login", data={"token": token(stack.settings, Role.COORDINATOR)})
        assert response.status_code == 403
        assert (await client.get("/console")).status_code == 303


@pytest.mark.parametrize("role", [Role.COORDINATOR, Role.ADMIN])
async def test_coordinator_and_admin_log_in_and_out(stack: Stack, role: Role) -> None:
    async with console_client(stack, role) as client:
        cookie = next(c for c in client.cookies.jar if c.name == "careflow_console")
        assert cookie.path == "/console" and cookie.has_nonstandard_attr("HttpOnly")
        overview = await client.get("/console")
        assert overview.status_code == 200 and "Open escalations" in overview.text
        for path in (
            "/console/flows?awaiting_ack=1",
            "/console/flows?escalated=1&sort=newest&page=2",
            "/console/flows?status=completed&overdue=0",
            "/console/escalations",
        ):
            assert (await client.get(path)).status_code == 200, path
        assert "not understood" in (await client.get("/console/flows?page=0")).text
        # Logging out needs the CSRF token too.
        assert (await client.post("/console/logout")).status_code == 403
        assert (await client.post("/console/logout", data={"csrf_token": csrf_of(overview.text)})).status_code == 303
        assert (await client.get("/console")).status_code == 303


async def test_session_cookie_is_httponly_lax_and_scoped(stack: Stack) -> None:
    async with httpx.AsyncClient(base_url=stack.settings.public_url) as client:
        form = await client.get("/console/login")
        response = await client.post(
            "/console/login", data={"token": token(stack.settings, Role.COORDINATOR), "csrf_token": csrf_of(form.text)}
        )
        set_cookie = response.headers["set-cookie"].lower()
        assert "httponly" in set_cookie and "samesite=lax" in set_cookie and "path=/console" in set_cookie


async def test_action_without_valid_csrf_is_403_and_changes_nothing(stack: Stack, escalated_flow) -> None:  # noqa: ANN001
    flow = await escalated_flow()
    escalation = next(e for e in read_escalations(stack, flow.flow_id) if e.resolved_at is None)
    handle: WorkflowHandle = stack.client.get_workflow_handle_for(ReferralPathwayWorkflow.run, flow.workflow_id)
    before = await handle.query(ReferralPathwayWorkflow.pathway_state)
    audit_before = len(read_audit(stack, flow.flow_id))
    form = {"reason": "patient called", "new_deadline": "2049-01-01T10:00", "next": "/console/escalations"}
    async with console_client(stack) as client:
        for csrf in (None, "", "wrong-token"):
            data = form if csrf is None else {**form, "csrf_token": csrf}
            for action in ("extend-deadline", "resend", "complete-step", "cancel"):
                response = await client.post(f"/console/escalations/{escalation.id}/{action}", data=data)
                assert response.status_code == 403, (action, csrf)
                assert "CSRF" in response.text and "Nothing was changed" in response.text
        # A token from another session is as good as none.
        async with console_client(stack) as other:
            stolen = csrf_of((await other.get("/console")).text)
        assert (
            await client.post(f"/console/escalations/{escalation.id}/cancel", data={**form, "csrf_token": stolen})
        ).status_code == 403
    after = await handle.query(ReferralPathwayWorkflow.pathway_state)
    assert after.status == before.status and after.step == before.step
    assert [s.deadline for s in after.steps] == [s.deadline for s in before.steps]
    assert len(after.open_escalations) == len(before.open_escalations) == 1
    still = next(e for e in read_escalations(stack, flow.flow_id) if e.id == escalation.id)
    assert still.resolved_at is None and still.resolved_by is None
    # Only the reads of the console (none here) would be audited: no action was recorded.
    assert len(read_audit(stack, flow.flow_id)) == audit_before


async def test_actions_through_http(stack: Stack, escalated_flow) -> None:  # noqa: ANN001
    """Each action is a workflow update: a refusal is shown and changes nothing; a success is
    recorded in the timeline, the audit log and the escalation's resolved_by."""
    booked, moved = await escalated_flow(), await escalated_flow()
    async with console_client(stack, subject="coordinator-anna") as client:
        csrf = csrf_of((await client.get("/console/escalations")).text)

        async def post(flow_id: str, action: str, **data: str) -> str:
            escalation = read_escalations(stack, flow_id)[0]
            response = await client.post(
                f"/console/escalations/{escalation.id}/{action}",
                data={"csrf_token": csrf, "next": f"/console/flows/{flow_id}", **data},
                follow_redirects=True,
            )
            assert response.status_code == 200
            return response.text

        async def resolved(flow_id: str) -> Escalation:
            async def done() -> Escalation | None:
                row = read_escalations(stack, flow_id)[0]
                return row if row.resolved_at is not None else None

            return await wait_for(done)

        assert "The pathway refused this action: a reason is required" in await post(
            booked.flow_id, "extend-deadline", reason=" ", new_deadline="2049-01-01T10:00"
        )
        assert "is not a date and time" in await post(
            booked.flow_id, "extend-deadline", reason="wait", new_deadline="not a date"
        )
        assert read_escalations(stack, booked.flow_id)[0].resolved_at is None
        assert "Done: appointment recorded as done outside careflow" in await post(
            booked.flow_id, "complete-step", reason="booked by phone"
        )
        row = await resolved(booked.flow_id)
        assert row.resolved_by == "coordinator-anna" and "booked by phone" in (row.resolution or "")
        actions = [a.action for a in read_audit(stack, booked.flow_id)]
        assert "console-extend-deadline-refused" in actions and "console-complete-step" in actions
        # A stale page: the escalation is resolved, so nothing more is done through it.
        assert "already resolved" in await post(
            booked.flow_id, "extend-deadline", reason="late click", new_deadline="2049-01-01T10:00"
        )

        assert "Done: cancellation requested" in await post(moved.flow_id, "cancel", reason="patient moved away")
        handle = stack.client.get_workflow_handle_for(ReferralPathwayWorkflow.run, moved.workflow_id)
        assert (await handle.result()).status.value == "cancelled"
        row = await resolved(moved.flow_id)
        assert row.resolved_by == "coordinator-anna" and row.resolution == "pathway cancelled"
        assert any(
            a.action == "console-cancel" and "patient moved away" in a.detail for a in read_audit(stack, moved.flow_id)
        )


async def test_action_on_an_ended_workflow_is_explained(stack: Stack, escalated_flow) -> None:  # noqa: ANN001
    """The read model can lag behind Temporal: an action on a workflow that has ended says so."""
    flow = await escalated_flow()
    await stack.client.get_workflow_handle(flow.workflow_id).terminate(reason="ended outside the console")
    escalation = read_escalations(stack, flow.flow_id)[0]
    async with console_client(stack) as client:
        csrf = csrf_of((await client.get("/console/escalations")).text)
        response = await client.post(
            f"/console/escalations/{escalation.id}/extend-deadline",
            data={"csrf_token": csrf, "reason": "more time", "new_deadline": "2049-01-01T10:00"},
            follow_redirects=True,
        )
    assert response.status_code == 200
    assert "could not take the action" in response.text and "Nothing was changed" in response.text
    assert read_escalations(stack, flow.flow_id)[0].resolved_by is None
