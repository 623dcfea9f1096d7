"""Timing of parse_message + validate_message on one typical message (the API's inbound hot path).

    .venv/bin/python benchmarks/bench_messaging.py [--iterations 500] [--xml]

Prints median and p99 in milliseconds; the target is well under 10 ms per message.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from messaging import (  # noqa: E402
    Envelope,
    MessageKind,
    ObservationValue,
    PatientData,
    build_message,
    load_default_directory,
    parse_message,
    to_json,
    to_xml,
    validate_message,
)
from messaging.model import TestResultContent  # noqa: E402


def typical_message() -> dict:
    """A test result with three observations: the largest of careflow's pathway messages."""
    directory = load_default_directory()
    envelope = Envelope(
        message_header_id="3f2b8c1e-7a6d-4e5f-9b0a-1c2d3e4f5a6b",
        bundle_id="8e7d6c5b-4a39-4281-9f0e-d1c2b3a49586",
        timestamp=datetime(2025, 3, 4, 10, 30, tzinfo=UTC),
        sender=directory.get("300000000000001").organization,  # the demo lab
        receiver=directory.get("100000000000001").organization,  # the demo GP
        patient=PatientData(cpr="0101010000", given_name="Testa", family_name="Syntetisk"),
    )
    content = TestResultContent(
        service_request_id="5d1c0d3e-8f2b-4a6c-9e7d-1a2b3c4d5e6f",
        code="NPU19748",
        display="Lipidstatus",
        conclusion="Normale værdier",
        observations=[
            ObservationValue(code="NPU01566", display="P—Kolesterol", value=4.9, unit="mmol/L"),
            ObservationValue(code="NPU01567", display="P—Kolesterol LDL", value=2.8, unit="mmol/L"),
            ObservationValue(code="NPU04094", display="P—Triglycerid", value=1.2, unit="mmol/L"),
        ],
    )
    return build_message(MessageKind.TEST_RESULT, envelope, content)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--iterations", type=int, default=500)
    parser.add_argument("--xml", action="store_true", help="post the message as FHIR XML instead of JSON")
    args = parser.parse_args()

    bundle = typical_message()
    body, content_type = (
        (to_xml(bundle), "application/fhir+xml") if args.xml else (to_json(bundle), "application/fhir+json")
    )
    from messaging.parse import decode_body

    def once() -> None:
        # what the API does per inbound message: decode, read the routing data, validate
        decoded = decode_body(body, content_type)
        parse_message(decoded)
        issues = validate_message(decoded)
        assert not issues, issues

    for _ in range(20):  # warm-up: model classes, terminology cache
        once()
    timings = []
    for _ in range(args.iterations):
        start = time.perf_counter()
        once()
        timings.append((time.perf_counter() - start) * 1000)
    timings.sort()
    p99 = timings[min(len(timings) - 1, int(len(timings) * 0.99))]
    print(
        f"parse+validate ({'XML' if args.xml else 'JSON'}, {len(body)} bytes, {len(bundle['entry'])} entries), "
        f"{args.iterations} iterations: median {statistics.median(timings):.2f} ms, p99 {p99:.2f} ms, max "
        f"{timings[-1]:.2f} ms"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
