"""A FHIR OperationOutcome for an HTTP answer: one issue per message, each with its FHIRPath."""

from __future__ import annotations


def operation_outcome(
    diagnostics: str | list[str], *, code: str = "invalid", severity: str = "error", expression: list[str] | None = None
) -> dict:
    messages = [diagnostics] if isinstance(diagnostics, str) else diagnostics
    issues = []
    for i, message in enumerate(messages):
        issue = {"severity": severity, "code": code, "diagnostics": message}
        if expression and i < len(expression) and expression[i]:
            issue["expression"] = [expression[i]]
        issues.append(issue)
    return {"resourceType": "OperationOutcome", "issue": issues}
