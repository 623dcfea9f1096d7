"""Triage decision (visitationsafgørelse) on MedCom's draft referral model: focus a Task about the
referral — accept, reject, forward (with the ServiceRequest that replaces the referral) or
reprioritise. careflow's own event code: the draft has none for it."""

from __future__ import annotations

from messaging import referral_draft as draft
from messaging.terminology import CAREFLOW_EVENT_SYSTEM
from messaging.types.base import MessageType

TYPE = MessageType(
    code=draft.TRIAGE,
    system=CAREFLOW_EVENT_SYSTEM,
    label="triage decision",
    label_da="visitationsafgørelse",
    focus="Task",
    content=draft.TriageContent,
    build=draft.build_triage,
    extract=draft.extract_triage,
    rules=(draft.check_triage,),
)
