"""New referral (ny henvisning) on MedCom's draft referral model: focus a ServiceRequest whose
identifier is the pathway's correlation id. Event code new-referral in careflow's own code system
(the draft's codes are unreleased; see messaging/referral_draft.py)."""

from __future__ import annotations

from messaging import referral_draft as draft
from messaging.terminology import CAREFLOW_EVENT_SYSTEM
from messaging.types.base import MessageType

TYPE = MessageType(
    code=draft.NEW_REFERRAL,
    system=CAREFLOW_EVENT_SYSTEM,
    label="new referral",
    label_da="ny henvisning",
    focus="ServiceRequest",
    content=draft.ReferralRequestContent,
    build=draft.build_request,
    rules=(draft.request_status_rule("new-referral-request", ("active",)),),
)
