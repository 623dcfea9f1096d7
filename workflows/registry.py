"""The pathways careflow knows: the built-in ones, plus those in the modules a deployment names
(setting `pathway_modules`, e.g. CAREFLOW_PATHWAY_MODULES='["my_region.pathways.lab_order"]')."""

from __future__ import annotations

import importlib
import inspect
from collections.abc import Iterable

from careflow.deadlines import DEFAULT_RULE_BOOK
from workflows.declare import AwaitEvent, AwaitOneOf, AwaitReply, OnEvent, OnMessage, Send, SendOnEvent, walk
from workflows.home_care_observation import HomeCareObservationPathway
from workflows.hospital_notification import HospitalNotificationPathway
from workflows.medcom_referral import MedcomReferralPathway
from workflows.referral import ReferralPathwayWorkflow
from workflows.steps import PathwayWorkflow

BUILT_IN: tuple[type[PathwayWorkflow], ...] = (
    ReferralPathwayWorkflow,
    HospitalNotificationPathway,
    MedcomReferralPathway,
    HomeCareObservationPathway,
)


class PathwayError(ValueError):
    """A pathway declaration that cannot run: named at start-up, not at the first flow."""


def check(pathway: type[PathwayWorkflow]) -> None:
    """Refuse a declaration with a step, party or timing that does not exist."""
    where = f"pathway {pathway.__name__}"
    if not pathway.name:
        raise PathwayError(f"{where} has no name")
    if not pathway.steps:
        raise PathwayError(f"{where} declares no steps")
    roles = {p.role for p in pathway.parties}
    timings = set(pathway.timings_model.model_fields)
    names: set[str] = set()
    for step in pathway.all_steps():
        if step.name in names:
            raise PathwayError(f"{where}: two steps are called {step.name!r}")
        names.add(step.name)
        for role in (getattr(step, "to", None), getattr(step, "sender", None)):
            if role is not None and role not in roles:
                raise PathwayError(
                    f"{where}, step {step.name!r}: no party {role!r} (parties: {', '.join(sorted(roles))})"
                )
        deadline = getattr(step, "deadline", None)
        if deadline is not None and deadline not in timings:
            raise PathwayError(
                f"{where}, step {step.name!r}: no timing {deadline!r} in {pathway.timings_model.__name__}"
            )
        if isinstance(step, AwaitReply) and step.deadline_from and step.deadline_from not in names:
            raise PathwayError(
                f"{where}, step {step.name!r}: deadline_from {step.deadline_from!r} is not an earlier step"
            )
        for outcome in step.outcomes.values() if isinstance(step, AwaitOneOf) else ():
            if outcome.reassign and outcome.reassign not in roles:
                raise PathwayError(f"{where}, step {step.name!r}: reassigns no party {outcome.reassign!r}")
        known_rules = {r.id for version in DEFAULT_RULE_BOOK.versions for r in version.rules}
        for rule in getattr(step, "legal", ()):
            if rule not in known_rules:
                raise PathwayError(f"{where}, step {step.name!r}: no legal deadline rule {rule!r}")
    main = {s.name for s in walk(pathway.steps)}
    on_events = {s.name for s in pathway.alongside if isinstance(s, OnEvent)}
    for step in pathway.alongside:
        if isinstance(step, OnEvent) and step.after and step.after not in main:
            raise PathwayError(f"{where}, step {step.name!r}: after {step.after!r} is not one of its steps")
        if isinstance(step, OnMessage) and step.answer and step.answer not in on_events:
            raise PathwayError(f"{where}, step {step.name!r}: its answer {step.answer!r} is no OnEvent")
    if pathway.treatment_offer_accepted_step and pathway.treatment_offer_accepted_step not in main:
        raise PathwayError(f"{where}: treatment_offer_accepted_step is not one of its steps")
    if pathway.track_field and pathway.track_field not in pathway.input_model.model_fields:
        raise PathwayError(f"{where}: the input model has no track field {pathway.track_field!r}")
    for role in (pathway.acting_for, pathway.counterpart):
        if role not in roles:
            raise PathwayError(f"{where}: acting_for/counterpart {role!r} is not one of its parties")
    for party in pathway.parties:
        if party.field and party.field not in pathway.input_model.model_fields:
            raise PathwayError(f"{where}, party {party.role!r}: the input model has no field {party.field!r}")


def messages_sent(pathway: type[PathwayWorkflow]) -> dict[str, set[str]]:
    """Party role -> the message types the pathway sends it (the directory must accept them)."""
    sent: dict[str, set[str]] = {}
    for step in pathway.all_steps():
        if isinstance(step, Send | SendOnEvent | OnEvent):
            sent.setdefault(step.to, set()).add(step.message)
    return sent


def messages_awaited(pathway: type[PathwayWorkflow]) -> list[tuple[str, str]]:
    """(message type, party role) pairs the pathway waits for."""
    awaited = []
    for step in pathway.all_steps():
        if isinstance(step, AwaitReply):
            awaited.append((step.message, step.sender))
        elif isinstance(step, AwaitOneOf):
            awaited += [(o.message, step.sender) for o in step.outcomes.values()]
        elif isinstance(step, OnMessage):
            awaited.append((step.message, step.sender))
    return awaited


def events(pathway: type[PathwayWorkflow]) -> list[AwaitEvent | SendOnEvent | OnEvent]:
    return [s for s in pathway.all_steps() if isinstance(s, AwaitEvent | SendOnEvent | OnEvent)]


class Pathways:
    """Name → pathway, from the built-in ones and the named modules (every Pathway subclass with
    a name that a module defines)."""

    def __init__(self, pathways: Iterable[type[PathwayWorkflow]]) -> None:
        self._by_name: dict[str, type[PathwayWorkflow]] = {}
        for pathway in pathways:
            check(pathway)
            known = self._by_name.get(pathway.name)
            if known is not None and known is not pathway:
                raise PathwayError(
                    f"two pathways are called {pathway.name!r}: {known.__module__} and {pathway.__module__}"
                )
            self._by_name[pathway.name] = pathway

    @classmethod
    def load(cls, modules: Iterable[str] = ()) -> Pathways:
        found: list[type[PathwayWorkflow]] = list(BUILT_IN)
        for name in modules:
            try:
                module = importlib.import_module(name)
            except ImportError as err:
                raise PathwayError(f"pathway module {name!r} cannot be imported: {err}") from err
            found += [
                obj
                for _, obj in inspect.getmembers(module, inspect.isclass)
                if issubclass(obj, PathwayWorkflow)
                and obj is not PathwayWorkflow
                and obj.name
                and obj.__module__ == module.__name__
            ]
        return cls(found)

    def get(self, name: str) -> type[PathwayWorkflow] | None:
        return self._by_name.get(name)

    def __getitem__(self, name: str) -> type[PathwayWorkflow]:
        return self._by_name[name]

    def __contains__(self, name: object) -> bool:
        return name in self._by_name

    def __iter__(self):  # noqa: ANN204
        return iter(self._by_name.values())

    def names(self) -> list[str]:
        return list(self._by_name)

    def items(self):  # noqa: ANN201
        return self._by_name.items()

    @property
    def workflows(self) -> list[type[PathwayWorkflow]]:
        return list(self._by_name.values())

    def starting_on(self, message: str) -> list[type[PathwayWorkflow]]:
        return [p for p in self if any(t.message == message for t in p.starts)]


PATHWAYS = Pathways(BUILT_IN)
WORKFLOWS = PATHWAYS.workflows


def describe(pathway: type[PathwayWorkflow], timings: object | None = None) -> dict:
    """A pathway's declaration as data: what `GET /pathways` answers and the console draws."""
    from messaging.model import message_label

    timings = timings or pathway.timings_model()

    def deadline(name: str | None) -> dict | None:
        if name is None:
            return None
        value = getattr(timings, name)
        return {"timing": name, "seconds": value.total_seconds() if hasattr(value, "total_seconds") else value}

    def sent(message: str, party: str) -> dict:  # the message a step sends or awaits, and its party
        return {"message": message, "message_label": message_label(message), "party": party}

    def reported(s: AwaitEvent | SendOnEvent | OnEvent) -> dict:
        return {"event": s.event, "title": s.title or s.event, "roles": list(s.roles)}

    def step(s: object) -> dict:
        if isinstance(s, Send):
            return {
                "name": s.name,
                "kind": "send",
                **sent(s.message, s.to),
            }
        if isinstance(s, AwaitReply):
            return {
                "name": s.name,
                "kind": "await-reply",
                **sent(s.message, s.sender),
                "deadline": deadline(s.deadline),
                "deadline_from": s.deadline_from,
                "legal": list(s.legal),
            }
        if isinstance(s, AwaitOneOf):
            outcomes = [
                {
                    "outcome": name,
                    "message": o.message,
                    "message_label": message_label(o.message),
                    "when": o.when,
                    "escalate": o.escalate,
                    "end": o.end,
                    "reassign": o.reassign,
                    "again": o.again,
                    "steps": [step(x) for x in o.steps],
                }
                for name, o in s.outcomes.items()
            ]
            return {
                "name": s.name,
                "kind": "await-one-of",
                "party": s.sender,
                "deadline": deadline(s.deadline),
                "legal": list(s.legal),
                "outcomes": outcomes,
            }
        if isinstance(s, SendOnEvent):
            return {
                "name": s.name,
                "kind": "send-on-event",
                **reported(s),
                **sent(s.message, s.to),
                "deadline": deadline(s.deadline),
            }
        if isinstance(s, OnEvent):
            return {
                "name": s.name,
                "kind": "on-event",
                **reported(s),
                **sent(s.message, s.to),
                "after": s.after,
                "ends": s.ends,
            }
        if isinstance(s, OnMessage):
            return {
                "name": s.name,
                "kind": "on-message",
                **sent(s.message, s.sender),
                "answer": s.answer,
                "deadline": deadline(s.deadline),
            }
        assert isinstance(s, AwaitEvent)
        return {
            "name": s.name,
            "kind": "await-event",
            **reported(s),
            "deadline": deadline(s.deadline),
            "legal": list(s.legal),
        }

    return {
        "name": pathway.name,
        "title": pathway.title,
        "title_da": pathway.title_da,
        "description": (pathway.__doc__ or "").strip().split("\n\n")[0],
        "api_start": pathway.api_start,
        "parties": [
            {"role": p.role, "title": p.title, "field": p.field, "directory_kind": p.directory_kind}
            for p in pathway.parties
        ],
        "steps": [step(s) for s in pathway.steps],
        "alongside": [step(s) for s in pathway.alongside],
        "legal_rules": sorted(pathway.legal_rules()),
        "starts": [{"message": t.message, "message_label": message_label(t.message)} for t in pathway.starts],
        "timings": timings.model_dump(mode="json") if hasattr(timings, "model_dump") else {},
        "input_schema": pathway.input_model.model_json_schema(),
    }
