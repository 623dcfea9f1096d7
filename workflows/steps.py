"""Reusable pathway machinery: send with the MedCom resend rule, await a reply with a deadline,
coordinator actions, and the projection into the read model.

A pathway module subclasses `PathwayWorkflow`, declares its steps and writes a short `run`.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from datetime import timedelta

from temporalio import workflow
from temporalio.common import RetryPolicy, SearchAttributeKey
from temporalio.exceptions import ActivityError

with workflow.unsafe.imports_passed_through():
    from activities.flows import FlowActivities
    from activities.messages import MessageActivities
    from activities.models import ActivityErrors, RecordStateRequest, SendMessageRequest, TimelineEvent
    from messaging.model import AckCode, CancellationContent, Envelope, MessageKind, ReferralContent, message_label
    from workflows.models import (
        ActionResult,
        CancelRequest,
        CompleteStepRequest,
        EscalationState,
        ExtendDeadlineRequest,
        InboundMessageSignal,
        OutboundState,
        PathwayInput,
        PathwayResult,
        PathwayState,
        PathwayStatus,
        ResendRequest,
        StepState,
        StepStatus,
    )

# Search attributes: pathway, step, status, next deadline. Never patient data.
SA_PATHWAY = SearchAttributeKey.for_keyword("CareflowPathway")
SA_STEP = SearchAttributeKey.for_keyword("CareflowStep")
SA_STATUS = SearchAttributeKey.for_keyword("CareflowStatus")
SA_NEXT_DEADLINE = SearchAttributeKey.for_datetime("CareflowNextDeadline")
SEARCH_ATTRIBUTES = (SA_PATHWAY, SA_STEP, SA_STATUS, SA_NEXT_DEADLINE)

# Partner systems over HTTP: retry network trouble and 5xx with backoff (the SDK adds jitter),
# never what retrying cannot fix.
PARTNER_RETRY = RetryPolicy(
    initial_interval=timedelta(seconds=1),
    backoff_coefficient=2.0,
    maximum_interval=timedelta(minutes=1),
    maximum_attempts=0,
    non_retryable_error_types=[
        ActivityErrors.NOT_ACCEPTED,
        ActivityErrors.UNKNOWN_ORGANIZATION,
        ActivityErrors.PARTNER_REJECTED,
    ],
)
# Partner retries above are bounded by time, not count: a send that has not gone through in this
# long becomes an escalation.
SEND_TIMEOUT = timedelta(hours=2)
# workflow.patched ids: histories recorded before a change replay the old way.
ACK_BEFORE_SEND_RETURNED = "ack-before-send-returned"
# Project once per step change instead of twice (finishing a step and entering the next are one
# projection): half the activities per pathway.
LEAN_PROJECTIONS = "lean-projections"
# A resend update answers once the read model shows it, so the console's next page is current.
RESEND_ANSWERS_AFTER_PROJECTION = "resend-answers-after-projection"
# A second reply of a type replaces the first and shows on the timeline (before: logged and
# ignored — a message careflow had accepted and acknowledged, then dropped).
SECOND_REPLY_APPLIED = "second-reply-applied"
DATABASE_RETRY = RetryPolicy(initial_interval=timedelta(milliseconds=200), maximum_interval=timedelta(seconds=10))
RECORD_TIMEOUT = timedelta(seconds=30)


@dataclass(frozen=True)
class OutboundStep:
    """Send a message and await its acknowledgement."""

    name: str
    kind: MessageKind


@dataclass(frozen=True)
class ReplyStep:
    """Await a reply message; escalate when its deadline passes, and keep waiting."""

    name: str
    kind: MessageKind
    deadline: str  # name of the timing in PathwayTimings


class PathwayCancelled(Exception):
    pass


class PathwayWorkflow:
    """Base of every pathway: state, inbound-message signal, viewer query, coordinator updates."""

    steps: tuple[OutboundStep | ReplyStep, ...] = ()

    def __init__(self) -> None:
        self.input: PathwayInput | None = None
        self.state: PathwayState | None = None
        self._acks: dict[str, list[InboundMessageSignal]] = {}
        self._replies: dict[MessageKind, InboundMessageSignal] = {}
        self._applied: set[str] = set()
        self._pending_events: list[TimelineEvent] = []
        self._cancel: CancelRequest | None = None
        self._resend: ResendRequest | None = None
        self._deadline_changes = 0
        self._done_outside: dict[str, CompleteStepRequest] = {}
        self._event_seq = 0
        self._lean_projections = False

    # ----- handlers -----------------------------------------------------------------------

    @workflow.signal
    def message_received(self, message: InboundMessageSignal) -> None:
        """A partner's message (acknowledgement or clinical reply), kept even if it arrives early."""
        if message.message_header_id in self._applied:
            workflow.logger.info("ignoring duplicate message %s", message.message_header_id)
            return
        self._applied.add(message.message_header_id)
        replaced = False
        if message.kind is MessageKind.ACKNOWLEDGEMENT and message.response_to:
            self._acks.setdefault(message.response_to, []).append(message)
        elif message.kind not in self._replies:
            self._replies[message.kind] = message
        elif workflow.patched(SECOND_REPLY_APPLIED):
            self._replies[message.kind] = message  # e.g. a rescheduled appointment: the newer one holds
            replaced = True
        else:
            workflow.logger.info("ignoring a second %s reply %s", message.kind.value, message.message_header_id)
            return
        if self.state is not None:
            self.state.received_header_ids.append(message.message_header_id)
            detail = message_label(message.kind) + (f" {message.response_code.value}" if message.response_code else "") + (" (replaces the earlier one)" if replaced else "")
            self._event("received", self._step_for_kind(message.kind), detail + (f": {message.summary}" if message.summary else ""), message.message_header_id)

    @workflow.query
    def pathway_state(self) -> PathwayState:
        """Where the pathway stands, for coordinators. No patient data."""
        assert self.state is not None
        return self.state

    @workflow.update
    async def cancel(self, request: CancelRequest) -> ActionResult:
        """Cancel the pathway; a cancellation message goes to the receiver."""
        self._cancel = request
        return ActionResult(detail="cancellation requested")

    @cancel.validator
    def _validate_cancel(self, request: CancelRequest) -> None:
        self._require_active_and_reason(request.reason)
        if self._cancel is not None:
            raise ValueError("the pathway is already being cancelled")

    @workflow.update
    async def resend(self, request: ResendRequest) -> ActionResult:
        """Send the last outbound message again (same MessageHeader.id, new Bundle.id)."""
        self._resend = request
        await workflow.wait_condition(lambda: self._resend is None)
        return ActionResult(detail="message resent")

    @resend.validator
    def _validate_resend(self, request: ResendRequest) -> None:
        self._require_active_and_reason(request.reason)
        if not self.state or not self.state.outbound:
            raise ValueError("nothing has been sent yet")
        if self._resend is not None:
            raise ValueError("a resend is already under way")
        if any(isinstance(s, OutboundStep) and s.name == self.state.step for s in self.steps):
            raise ValueError("the message is still within its acknowledgement window: careflow resends it by itself")

    @workflow.update
    async def extend_deadline(self, request: ExtendDeadlineRequest) -> ActionResult:
        """Give the current step more time; resolves its deadline escalation."""
        step = self._step_state(request.step)
        step.deadline = request.new_deadline
        if step.status is StepStatus.OVERDUE:
            step.status = StepStatus.WAITING
        self._resolve_escalations(request.step, f"deadline extended to {request.new_deadline:%Y-%m-%d %H:%M} by {request.actor}: {request.reason}")
        self._event("action", request.step, f"deadline extended to {request.new_deadline.isoformat()}: {request.reason}", actor=request.actor)
        self._deadline_changes += 1
        return ActionResult(detail=f"deadline of {request.step} is now {request.new_deadline.isoformat()}")

    @extend_deadline.validator
    def _validate_extend(self, request: ExtendDeadlineRequest) -> None:
        self._require_active_and_reason(request.reason)
        step = self._waiting_step(request.step)
        if request.new_deadline.tzinfo is None:
            raise ValueError("the new deadline needs a time zone")
        if request.new_deadline <= workflow.now():
            raise ValueError("the new deadline must be in the future")
        if step.deadline and request.new_deadline <= step.deadline:
            raise ValueError("the new deadline must be later than the current one")

    @workflow.update
    async def complete_step(self, request: CompleteStepRequest) -> ActionResult:
        """Record a step as done outside careflow (e.g. booked by phone)."""
        self._done_outside[request.step] = request
        self._event("action", request.step, f"recorded as done outside careflow: {request.reason}", actor=request.actor)
        return ActionResult(detail=f"{request.step} recorded as done outside careflow")

    @complete_step.validator
    def _validate_complete(self, request: CompleteStepRequest) -> None:
        self._require_active_and_reason(request.reason)
        self._waiting_step(request.step)

    # ----- step helpers -------------------------------------------------------------------

    async def run_pathway(self, pathway_input: PathwayInput) -> PathwayResult:
        """What a pathway's `run` does: set up its state, then run its declared steps."""
        self.input = pathway_input
        self._lean_projections = workflow.patched(LEAN_PROJECTIONS)
        self.state = PathwayState(
            flow_id=pathway_input.flow_id,
            pathway=pathway_input.pathway,
            step=self.steps[0].name,
            steps=[StepState(name=s.name) for s in self.steps],
        )
        workflow.upsert_search_attributes([SA_PATHWAY.value_set(pathway_input.pathway)])
        if not self._lean_projections:
            await self.record()  # the API made the read-model row: nothing new to project yet
        return await self.run_steps()

    async def run_steps(self) -> PathwayResult:
        """Run the declared steps in order, then complete. Cancellation ends it at any wait."""
        assert self.state is not None
        try:
            for step in self.steps:
                if isinstance(step, OutboundStep):
                    await self.send_and_await_ack(step)
                else:
                    await self.await_reply(step)
            self.state.status = PathwayStatus.COMPLETED
            self.state.step = "completed"
            self._event("completed", "", "pathway completed")
        except PathwayCancelled:
            await self._send_cancellation()
            self.state.status = PathwayStatus.CANCELLED
            for escalation in self.state.open_escalations:
                escalation.resolved_at, escalation.resolution = workflow.now(), "pathway cancelled"
            self._event("action", self.state.step, f"pathway cancelled: {self._cancel.reason}", actor=self._cancel.actor)
        await self.record()
        await workflow.wait_condition(workflow.all_handlers_finished)
        return PathwayResult(flow_id=self.state.flow_id, status=self.state.status, escalations=len(self.state.escalations))

    async def send_and_await_ack(self, step: OutboundStep) -> None:
        """Send, then apply MedCom's rule: no acknowledgement within the timeout → resend with the
        same MessageHeader.id and a new Bundle.id, at most `max_resends` times, then escalate.
        `transient-error` follows the resend rule; `fatal-error` escalates at once."""
        assert self.input and self.state
        timings = self.input.timings
        header_id = str(workflow.uuid4())
        outbound = OutboundState(step=step.name, kind=step.kind, message_header_id=header_id)
        self.state.outbound.append(outbound)
        self._enter_step(step.name)
        attempt = 0
        while True:
            # Count the acknowledgements before the send: a partner may acknowledge before it answers
            # the POST, and that acknowledgement must end the wait, not be taken for an old one.
            acks_before_send = len(self._acks.get(header_id, []))
            if not await self._send(step, outbound, attempt):
                return  # the partner refused it for good: escalated
            seen = acks_before_send if workflow.patched(ACK_BEFORE_SEND_RETURNED) else len(self._acks.get(header_id, []))
            try:
                await workflow.wait_condition(
                    lambda: len(self._acks.get(header_id, [])) > seen or self._reply_arrived_after(step) or self._cancel is not None,
                    timeout=timings.ack_timeout,
                )
            except asyncio.TimeoutError:
                pass
            self._check_cancel()
            ack = self._latest_ack(header_id)
            if ack is None and self._reply_arrived_after(step):
                break  # the reply implies receipt
            if ack is not None and ack.response_code is AckCode.OK:
                outbound.ack_code = AckCode.OK
                break
            if ack is not None and ack.response_code is AckCode.FATAL_ERROR:
                outbound.ack_code = AckCode.FATAL_ERROR
                await self.escalate(step.name, f"{message_label(step.kind)} refused by the receiver (fatal-error acknowledgement)")
                break
            if ack is not None:
                outbound.ack_code = ack.response_code
            if attempt >= timings.max_resends:
                reason = "transient-error acknowledgements" if ack else "no acknowledgement"
                await self.escalate(step.name, f"{reason} after {attempt} resends of the {message_label(step.kind)}")
                break
            attempt += 1
        self._finish_step(step.name, StepStatus.DONE, header_id)
        if not self._lean_projections:
            await self.record()  # otherwise the next step's (or the final) projection carries it

    async def await_reply(self, step: ReplyStep) -> None:
        """Wait for the reply; when the deadline passes escalate once, and keep waiting.
        A coordinator may extend the deadline, resend, or record the step as done."""
        assert self.input and self.state
        self._enter_step(step.name)
        state = self._step_state(step.name)
        state.deadline = workflow.now() + getattr(self.input.timings, step.deadline)
        await self.record()
        while True:
            self._check_cancel()
            if step.kind in self._replies:
                self._finish_step(step.name, StepStatus.DONE, self._replies[step.kind].message_header_id)
                self._resolve_escalations(step.name, f"{message_label(step.kind)} received")
                break
            if step.name in self._done_outside:
                request = self._done_outside[step.name]
                self._finish_step(step.name, StepStatus.DONE_OUTSIDE)
                self._resolve_escalations(step.name, f"done outside careflow ({request.actor}): {request.reason}")
                break
            if self._resend is not None:
                await self._resend_last()
                continue
            remaining = (state.deadline - workflow.now()) if state.deadline else None
            if remaining is not None and remaining <= timedelta(0) and state.status is not StepStatus.OVERDUE:
                state.status = StepStatus.OVERDUE
                await self.escalate(step.name, f"no {message_label(step.kind)} by its deadline")
                continue
            changes = self._deadline_changes
            wait_for = remaining if remaining is not None and remaining > timedelta(0) else None
            try:
                await workflow.wait_condition(
                    lambda: step.kind in self._replies
                    or step.name in self._done_outside
                    or self._resend is not None
                    or self._cancel is not None
                    or self._deadline_changes != changes,
                    timeout=wait_for,
                )
            except asyncio.TimeoutError:
                pass
            if self._deadline_changes != changes:
                await self.record()
        if not self._lean_projections:
            await self.record()  # otherwise the next step's (or the final) projection carries it

    async def escalate(self, step: str, reason: str) -> None:
        """Open an escalation for a coordinator; the pathway goes on."""
        assert self.state is not None
        key = f"{step}-{len(self.state.escalations) + 1}"
        self.state.escalations.append(EscalationState(key=key, step=step, reason=reason, opened_at=workflow.now()))
        self.state.status = PathwayStatus.ESCALATED
        self._event("escalated", step, reason)
        await self.record()

    async def record(self) -> None:
        """Project the state into the read model (and the search attributes)."""
        assert self.state is not None
        self.state.version += 1
        if self.state.status is PathwayStatus.ESCALATED and not self.state.open_escalations:
            self.state.status = PathwayStatus.ACTIVE
        workflow.upsert_search_attributes(
            [
                SA_STEP.value_set(self.state.step),
                SA_STATUS.value_set(self.state.status.value),
                SA_NEXT_DEADLINE.value_set(self.state.next_deadline) if self.state.next_deadline else SA_NEXT_DEADLINE.value_unset(),
            ]
        )
        events, self._pending_events = self._pending_events, []
        await workflow.execute_activity_method(
            FlowActivities.record_state,
            RecordStateRequest(state=self.state, events=events),
            start_to_close_timeout=RECORD_TIMEOUT,
            retry_policy=DATABASE_RETRY,
        )

    # ----- internals ----------------------------------------------------------------------

    async def _send(self, step: OutboundStep, outbound: OutboundState, attempt: int) -> bool:
        assert self.input and self.state
        bundle_id = str(workflow.uuid4())
        request = SendMessageRequest(
            flow_id=self.input.flow_id,
            step=step.name,
            kind=step.kind,
            attempt=attempt,
            envelope=Envelope(
                message_header_id=outbound.message_header_id,
                bundle_id=bundle_id,
                timestamp=workflow.now(),
                sender=self.input.referring,
                receiver=self.input.receiving,
                patient=self.input.patient,
            ),
            referral=ReferralContent(service_request_id=self.input.flow_id, reason=self.input.reason, priority=self.input.priority)
            if step.kind is MessageKind.REFERRAL
            else None,
            cancellation=CancellationContent(service_request_id=self.input.flow_id, reason=self._cancel.reason if self._cancel else "")
            if step.kind is MessageKind.CANCELLATION
            else None,
        )
        try:
            await workflow.execute_activity_method(
                MessageActivities.send_message, request, start_to_close_timeout=timedelta(seconds=30),
                schedule_to_close_timeout=SEND_TIMEOUT, retry_policy=PARTNER_RETRY,
            )
        except ActivityError as err:  # the send failed for good (refused, or retried past its time)
            cause = err.cause or err
            await self.escalate(step.name, f"{message_label(step.kind)} could not be sent: {cause}")
            return False
        outbound.bundle_ids.append(bundle_id)
        outbound.first_sent_at = outbound.first_sent_at or workflow.now()
        label = "sent" if attempt == 0 else f"resent (attempt {attempt + 1})"
        self._event("sent", step.name, f"{message_label(step.kind)} {label}", outbound.message_header_id, key=f"sent-{bundle_id}")
        return True

    async def _resend_last(self) -> None:
        assert self.state and self._resend
        outbound = self.state.outbound[-1]
        step = OutboundStep(name=outbound.step, kind=outbound.kind)
        self._event("action", outbound.step, f"resend requested: {self._resend.reason}", actor=self._resend.actor)
        await self._send(step, outbound, len(outbound.bundle_ids))
        self._resolve_escalations(outbound.step, f"resent by {self._resend.actor}: {self._resend.reason}")
        if workflow.patched(RESEND_ANSWERS_AFTER_PROJECTION):
            await self.record()
            self._resend = None  # answers the update: the read model already shows the resend
        else:
            self._resend = None
            await self.record()

    async def _send_cancellation(self) -> None:
        assert self.state is not None
        outbound = OutboundState(step=self.state.step, kind=MessageKind.CANCELLATION, message_header_id=str(workflow.uuid4()))
        self.state.outbound.append(outbound)
        await self._send(OutboundStep(name=self.state.step, kind=MessageKind.CANCELLATION), outbound, 0)

    def _check_cancel(self) -> None:
        if self._cancel is not None:
            raise PathwayCancelled()

    def _latest_ack(self, header_id: str) -> InboundMessageSignal | None:
        acks = self._acks.get(header_id)
        return acks[-1] if acks else None

    def _reply_arrived_after(self, step: OutboundStep) -> bool:
        later = self.steps[self.steps.index(step) + 1 :]
        return any(isinstance(s, ReplyStep) and s.kind in self._replies for s in later)

    def _step_for_kind(self, kind: MessageKind) -> str:
        for step in self.steps:
            if step.kind is kind:
                return step.name
        return self.state.step if self.state else ""

    def _step_state(self, name: str) -> StepState:
        assert self.state is not None
        for step in self.state.steps:
            if step.name == name:
                return step
        raise ValueError(f"unknown step {name!r}")

    def _waiting_step(self, name: str) -> StepState:
        step = self._step_state(name)
        if step.status not in (StepStatus.WAITING, StepStatus.OVERDUE) or name != self.state.step:
            raise ValueError(f"step {name!r} is not the step the pathway is waiting on")
        if not any(s.name == name and isinstance(s, ReplyStep) for s in self.steps):
            raise ValueError(f"step {name!r} does not wait for a reply")
        return step

    def _require_active_and_reason(self, reason: str) -> None:
        if self.state is None or self.state.status in (PathwayStatus.COMPLETED, PathwayStatus.CANCELLED, PathwayStatus.FAILED):
            raise ValueError("the pathway has ended")
        if not reason.strip():
            raise ValueError("a reason is required")

    def _enter_step(self, name: str) -> None:
        assert self.state is not None
        self.state.step = name
        self._step_state(name).status = StepStatus.WAITING

    def _finish_step(self, name: str, status: StepStatus, header_id: str | None = None) -> None:
        step = self._step_state(name)
        step.status, step.completed_at, step.message_header_id = status, workflow.now(), header_id

    def _resolve_escalations(self, step: str, resolution: str) -> None:
        assert self.state is not None
        for escalation in self.state.open_escalations:
            if escalation.step == step:
                escalation.resolved_at, escalation.resolution = workflow.now(), resolution

    def _event(self, kind: str, step: str, detail: str, header_id: str | None = None, *, actor: str | None = None, key: str | None = None) -> None:
        self._event_seq += 1
        self._pending_events.append(
            TimelineEvent(key=key or f"{kind}-{self._event_seq}", at=workflow.now(), kind=kind, step=step, detail=detail, message_header_id=header_id, actor=actor)
        )
