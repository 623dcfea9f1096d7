"""Updated referral (opdateret henvisning) on MedCom's draft referral model: the same ServiceRequest
identifier with the changed content. Event code update-referral in careflow's own code system."""

from __future__ import annotations

from messaging import referral_draft as draft
from messaging.terminology import CAREFLOW_EVENT_SYSTEM
from messaging.types.base import MessageType

TYPE = MessageType(
    code=draft.UPDATE_REFERRAL,
    system=CAREFLOW_EVENT_SYSTEM,
    label="updated referral",
    label_da="opdateret henvisning",
    focus="ServiceRequest",
    content=draft.ReferralRequestContent,
    build=draft.build_request,
    rules=(draft.request_status_rule("update-referral-request", ("active",)),),
)
