"""Booking (booking) on MedCom's draft referral model: focus the booked Appointment, based on the
referral; a rescheduling carries the appointment it replaces, cancelled. careflow's own event code:
the draft has none for it."""

from __future__ import annotations

from messaging import referral_draft as draft
from messaging.model import Correlation
from messaging.terminology import CAREFLOW_EVENT_SYSTEM
from messaging.types.base import MessageType, extract_correlation, requires_based_on


def extract(bundle: dict) -> Correlation:
    return extract_correlation(bundle).model_copy(update={"summary": draft.booking_summary(bundle)})


TYPE = MessageType(
    code=draft.BOOKING,
    system=CAREFLOW_EVENT_SYSTEM,
    label="booking",
    label_da="booking",
    focus="Appointment",
    content=draft.BookingContent,
    build=draft.build_booking,
    extract=extract,
    rules=(requires_based_on("booking-based-on", "a booking"),),
)
