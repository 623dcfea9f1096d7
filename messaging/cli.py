"""`careflow messages ...`: validate message files and convert them between FHIR JSON and XML.

careflow/cli.py calls add_messages_commands(subparsers); `python -m messaging.cli messages ...`
runs the same commands on their own.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from messaging.errors import MessageError
from messaging.formats import to_xml
from messaging.model import ValidationIssue
from messaging.parse import decode_body
from messaging.validate import validate_message

MESSAGE_SUFFIXES = (".json", ".xml")


def _message_files(paths: list[str]) -> list[Path]:
    """Files named directly, and message files (.json/.xml) found recursively in folders."""
    files: list[Path] = []
    for name in paths:
        path = Path(name)
        if path.is_dir():
            files.extend(sorted(p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in MESSAGE_SUFFIXES))
        else:
            files.append(path)
    return files


def check_file(path: Path) -> list[ValidationIssue]:
    """The issues of one message file, JSON or XML as its content says."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        return [ValidationIssue(rule="read", path=str(path), message=f"cannot read file ({type(exc).__name__})")]
    try:
        bundle = decode_body(data, content_type="")  # no media type: the content decides
    except MessageError as exc:
        return exc.issues or [ValidationIssue(rule="syntax", path="Bundle", message=str(exc))]
    return validate_message(bundle)


def cmd_validate(args: argparse.Namespace) -> int:
    files = _message_files(args.paths)
    if not files:
        print("no message files found", file=sys.stderr)
        return 1
    results = [(path, check_file(path)) for path in files]
    invalid = sum(1 for _, issues in results if issues)
    if args.json:
        report = {
            "files": [
                {"path": str(path), "valid": not issues, "issues": [i.model_dump() for i in issues]}
                for path, issues in results
            ],
            "summary": {"files": len(results), "valid": len(results) - invalid, "invalid": invalid},
        }
        print(json.dumps(report, indent=2))
    else:
        for path, issues in results:
            if not issues:
                print(f"OK {path}")
            for issue in issues:
                print(f"ERROR {path}: [{issue.rule}] {issue.path}: {issue.message} ({issue.error_code})")
        print(f"{len(results)} files: {len(results) - invalid} valid, {invalid} invalid")
    return 0 if invalid == 0 else 1


def cmd_convert(args: argparse.Namespace) -> int:
    try:
        bundle = decode_body(Path(args.file).read_bytes(), content_type="")
        output = (
            to_xml(bundle)
            if args.to == "xml"
            else json.dumps(bundle, indent=2, ensure_ascii=False).encode("utf-8") + b"\n"
        )
    except OSError as exc:
        print(f"cannot read {args.file}: {type(exc).__name__}", file=sys.stderr)
        return 1
    except MessageError as exc:
        print(f"cannot convert {args.file}: {exc}", file=sys.stderr)
        return 1
    sys.stdout.buffer.write(output)
    sys.stdout.buffer.flush()
    return 0


def add_messages_commands(subparsers: argparse._SubParsersAction) -> None:
    messages = subparsers.add_parser("messages", help="validate and convert MedCom FHIR messages")
    commands = messages.add_subparsers(dest="messages_command", required=True)

    validate = commands.add_parser("validate", help="validate message files or folders (JSON or XML)")
    validate.add_argument("paths", nargs="+", metavar="PATH", help="message files, or folders searched recursively")
    validate.add_argument("--json", action="store_true", help="machine-readable report")
    validate.set_defaults(func=cmd_validate)

    convert = commands.add_parser("convert", help="convert a message between FHIR JSON and XML (to stdout)")
    convert.add_argument("file", metavar="FILE")
    convert.add_argument("--to", choices=("xml", "json"), required=True)
    convert.set_defaults(func=cmd_convert)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m messaging.cli")
    add_messages_commands(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
