"""Cancelled referral (annulleret henvisning) on MedCom's draft referral model: the ServiceRequest
revoked. Event code cancel-referral in careflow's own code system."""

from __future__ import annotations

from messaging import referral_draft as draft
from messaging.terminology import CAREFLOW_EVENT_SYSTEM
from messaging.types.base import MessageType

TYPE = MessageType(
    code=draft.CANCEL_REFERRAL,
    system=CAREFLOW_EVENT_SYSTEM,
    label="cancelled referral",
    label_da="annulleret henvisning",
    focus="ServiceRequest",
    content=draft.CancelReferralContent,
    build=draft.build_cancel,
    rules=(draft.request_status_rule("cancel-referral-request", ("revoked",)),),
)
