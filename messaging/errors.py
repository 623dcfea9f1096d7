"""Errors the messaging layer raises; none of them ever carries patient data in its text."""

from __future__ import annotations

from messaging.model import ValidationIssue


class MessageError(ValueError):
    """A message that cannot be read or answered: unparseable, not a Bundle, no MessageHeader.

    `issues` says what is wrong in MedCom terms, so the API can answer with an
    OperationOutcome and a fatal-error acknowledgement.
    """

    def __init__(self, message: str, issues: list[ValidationIssue] | None = None) -> None:
        super().__init__(message)
        self.issues: list[ValidationIssue] = list(issues or [])


class DirectoryError(ValueError):
    """The directory file is unusable; `problems` names each bad row and field."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("invalid directory: " + "; ".join(problems))
        self.problems = problems


class UnknownOrganization(KeyError):
    """No directory entry for this SOR code (or EAN)."""

    def __str__(self) -> str:  # KeyError would quote the repr; say what is missing instead
        return self.args[0] if self.args else "unknown organization"


class NotAccepted(ValueError):
    """The receiver's directory entry does not accept this message type: never send it."""
