"""The `careflow` command: run the pieces (dev, worker, api, simulator), tokens, demo load, messages."""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from datetime import timedelta

from careflow.auth import Role
from careflow.settings import UnsafeConfiguration, get_settings


def _logging() -> None:
    from careflow.logs import configure_logging

    configure_logging(get_settings())


def _refuse_unsafe(process: str) -> None:
    """Outside dev mode, a missing or placeholder secret stops the start, naming the variable."""
    try:
        get_settings().refuse_unsafe(process)
    except UnsafeConfiguration as err:
        print(f"careflow: {err}", file=sys.stderr)
        sys.exit(2)


def cmd_dev(args: argparse.Namespace) -> int:
    from devtools.stack import run_dev

    # `careflow dev` is dev mode by definition, for itself and (through the environment) its children.
    os.environ["CAREFLOW_ENV"] = "dev"
    if args.transport:  # through the environment, so the worker, API and simulator use it too
        os.environ["CAREFLOW_PARTNER_TRANSPORT"] = args.transport
    get_settings.cache_clear()
    return run_dev(get_settings(), demo_referrals=args.demo_referrals, simulator_behaviour=args.simulator_behaviour)


def cmd_worker(args: argparse.Namespace) -> int:
    from workers.main import run_worker

    _refuse_unsafe("worker")
    _logging()
    asyncio.run(run_worker(get_settings()))
    return 0


def cmd_api(args: argparse.Namespace) -> int:
    import uvicorn

    _refuse_unsafe("api")
    settings = get_settings()
    _logging()
    # proxy_headers off: the app itself believes X-Forwarded-* only from CAREFLOW_TRUSTED_PROXIES.
    uvicorn.run(
        "api.main:create_app",
        factory=True,
        host=settings.api_host,
        port=args.port or settings.api_port,
        log_level="info",
        log_config=None,
        proxy_headers=False,
    )
    return 0


def cmd_simulator(args: argparse.Namespace) -> int:
    import uvicorn

    from careflow.heap import settle
    from simulator.app import Behaviour, create_simulator

    settings = get_settings()
    behaviour = Behaviour.model_validate_json(args.behaviour) if args.behaviour else Behaviour()
    app = create_simulator(settings, behaviour)
    settle("simulator", settings)
    uvicorn.run(
        app,
        host=settings.simulator_host,
        port=settings.simulator_port,
        log_level="warning",
    )
    return 0


def cmd_migrate(args: argparse.Namespace) -> int:
    from store.db import migrate

    migrate(get_settings().sqlalchemy_url)
    return 0


def cmd_setup(args: argparse.Namespace) -> int:
    import json

    from careflow.operations import SetupError, run_setup

    _logging()
    try:
        summary = asyncio.run(
            run_setup(get_settings(), register_namespace=not args.no_register_namespace, timeout=args.timeout)
        )
    except SetupError as err:
        print(f"careflow setup: {err}", file=sys.stderr)
        return 1
    print(json.dumps(summary))
    return 0


def cmd_secrets(args: argparse.Namespace) -> int:
    from careflow.operations import generate_secrets

    print(generate_secrets(args.env), end="")
    return 0


# Dev tokens act for the demo organisations unless told otherwise (a coordinator: all of them).
DEV_SOR = {Role.PARTNER: "200000000000001", Role.CLINICIAN: "100000000000001", Role.COORDINATOR: "*"}


def cmd_token(args: argparse.Namespace) -> int:
    """A JWT from the dev stack's key (the one `careflow dev` made in the data dir). Outside dev mode
    it never makes a key: production tokens come from the identity provider."""
    from careflow.tokens import dev_issuer

    settings = get_settings()
    role = Role(args.role)
    try:
        issuer = dev_issuer(settings.data_dir, create=settings.is_dev)
        token = issuer.issue(
            role, sor=args.sor or DEV_SOR.get(role), subject=args.subject, ttl=timedelta(minutes=args.minutes)
        )
    except (FileNotFoundError, ValueError) as err:
        print(f"careflow token: {err}", file=sys.stderr)
        return 2
    print(token)
    return 0


def cmd_audit(args: argparse.Namespace) -> int:
    """Verify the audit chain (exit 1 naming the first broken entry) or export it as JSON lines."""
    from store.audit import export_lines, verify_chain
    from store.db import make_engine

    _refuse_unsafe("audit")
    settings = get_settings()
    engine = make_engine(settings.sqlalchemy_url)
    try:
        if args.audit_command == "verify":
            verdict = verify_chain(engine, settings.cpr_hash_key)
            if verdict.ok:
                print(f"audit: {verdict.entries} entries, chain intact")
                return 0
            print(f"audit: chain broken after {verdict.entries} good entries: {verdict.problem}")
            return 1
        out = open(args.output, "w", encoding="utf-8") if args.output else sys.stdout  # noqa: SIM115
        try:
            for line in export_lines(engine):
                out.write(line + "\n")
        finally:
            if out is not sys.stdout:
                out.close()
        return 0
    finally:
        engine.dispose()


def cmd_keys(args: argparse.Namespace) -> int:
    """Move every encrypted column to the newest codec key (rotate: put the new key first)."""
    from careflow.crypto import KeyRing
    from careflow.keys import reencrypt
    from store.db import make_engine

    _refuse_unsafe("keys")
    settings = get_settings()
    key_ring = KeyRing.parse(settings.codec_keys)
    engine = make_engine(settings.sqlalchemy_url)
    try:
        moved = reencrypt(engine, key_ring)
    finally:
        engine.dispose()
    for column, count in sorted(moved.items()):
        print(f"{column}: {count} re-encrypted")
    print(f"keys: every encrypted column is under key {key_ring.active_key_id!r}")
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from devtools.demo import run_demo

    if not (get_settings().data_dir / "dev-signing-key.pem").exists():
        print(
            "careflow demo: it drives a `careflow dev` stack, and needs its dev key in the data dir: start `careflow "
            "dev` first",
            file=sys.stderr,
        )
        return 2
    flows = args.flows if args.flows is not None else args.referrals
    return asyncio.run(
        run_demo(
            get_settings(),
            pathway=args.pathway,
            flows=flows,
            api_url=args.api,
            concurrency=args.concurrency,
            timeout=args.timeout,
        )
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="careflow", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    dev = sub.add_parser("dev", help="run everything: Temporal dev server, worker, API, simulator, demo data")
    dev.add_argument(
        "--demo-referrals", type=int, default=5, help="referrals to create at start when the store is empty"
    )
    dev.add_argument(
        "--simulator-behaviour",
        default=None,
        help="JSON of simulator.app.Behaviour (default: answers after 2 s; the demo lab never answers)",
    )
    dev.add_argument(
        "--transport",
        choices=["process-message", "vans"],
        default=None,
        help="run every simulated partner (and careflow's own organisations) over this transport "
        "(sets CAREFLOW_PARTNER_TRANSPORT; default: each directory entry's own)",
    )
    dev.set_defaults(func=cmd_dev)
    sub.add_parser("worker", help="run a worker (and the relay)").set_defaults(func=cmd_worker)
    api = sub.add_parser("api", help="run the HTTP API")
    api.add_argument("--port", type=int, default=None)
    api.set_defaults(func=cmd_api)
    sim = sub.add_parser("simulator", help="run the simulated partner systems")
    sim.add_argument("--behaviour", help="JSON of simulator.app.Behaviour")
    sim.set_defaults(func=cmd_simulator)
    sub.add_parser("migrate", help="create or upgrade the database schema").set_defaults(func=cmd_migrate)
    setup = sub.add_parser(
        "setup", help="migrations + Temporal namespace and search attributes (idempotent; run before API and workers)"
    )
    setup.add_argument(
        "--no-register-namespace",
        action="store_true",
        help="the namespace is managed elsewhere (e.g. Temporal Cloud): only check it",
    )
    setup.add_argument("--timeout", type=float, default=120, help="seconds to wait for Temporal")
    setup.set_defaults(func=cmd_setup)
    secrets_cmd = sub.add_parser("secrets", help="print an env file with freshly generated secrets")
    secrets_cmd.add_argument("--env", default="production", help="CAREFLOW_ENV of the deployment (default: production)")
    secrets_cmd.set_defaults(func=cmd_secrets)

    token = sub.add_parser("token", help="print a dev JWT from the dev stack's key (alone on stdout)")
    token.add_argument("--role", required=True, choices=[r.value for r in Role])
    token.add_argument(
        "--sor",
        help="the organisation's SOR code (default: partner the demo hospital, clinician the demo GP, coordinator * "
        "= all)",
    )
    token.add_argument("--subject", help="who the token is for")
    token.add_argument(
        "--minutes",
        type=int,
        default=60,
        help="lifetime (the API accepts at most CAREFLOW_TOKEN_MAX_LIFETIME, 1 h by default)",
    )
    token.set_defaults(func=cmd_token)

    audit = sub.add_parser("audit", help="the audit log: verify its hash chain, export it as JSON lines")
    audit_sub = audit.add_subparsers(dest="audit_command", required=True)
    audit_sub.add_parser("verify", help="report the first altered, inserted or deleted entry (exit 1)").set_defaults(
        func=cmd_audit
    )
    export = audit_sub.add_parser("export", help="every entry as one JSON line, oldest first (for a SIEM)")
    export.add_argument("--output", help="file to write (default: stdout)")
    export.set_defaults(func=cmd_audit)

    keys = sub.add_parser("keys", help="codec key rotation for the database")
    keys_sub = keys.add_subparsers(dest="keys_command", required=True)
    keys_sub.add_parser(
        "reencrypt", help="re-encrypt every encrypted column with the newest key (the first in CAREFLOW_CODEC_KEYS)"
    ).set_defaults(func=cmd_keys)

    demo = sub.add_parser("demo", help="drive N flows of a pathway through the running stack and summarise")
    demo.add_argument("--pathway", default="referral", help="a declared pathway (GET /pathways); default: referral")
    demo.add_argument("--flows", type=int, default=None, help="how many flows (default 20)")
    demo.add_argument("--referrals", type=int, default=20, help="the same as --flows, for the referral pathway")
    demo.add_argument("--api", default=None, help="API base URL (default: the configured public URL)")
    demo.add_argument("--concurrency", type=int, default=20)
    demo.add_argument("--timeout", type=float, default=600, help="seconds to wait for the flows to settle")
    demo.set_defaults(func=cmd_demo)

    from messaging.cli import add_messages_commands

    add_messages_commands(sub)
    return parser


def main(argv: list[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    sys.exit(args.func(args) or 0)
