"""`make run`'s Temporal UI shows decoded payloads: a real `careflow dev`, Debian's Chromium (headless)
on the UI's history page of a demo referral, decoding through careflow's codec endpoint with the run's
dev UI credential; the decode is audited and the credential reaches no log."""

from __future__ import annotations

import asyncio
import os
import time
from pathlib import Path

import httpx
import pytest
from sqlmodel import Session, col, select

from store.db import make_engine
from store.models import AuditEntry
from tests.e2e.dev_run import careflow_dev

pytestmark = [pytest.mark.e2e, pytest.mark.browser]

ROOT = Path(__file__).resolve().parents[2]
CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
SHOTS = ROOT / "test-artifacts" / "temporal-ui"


def _codec_audit(data_dir: Path) -> list[AuditEntry]:
    engine = make_engine(f"sqlite:///{data_dir / 'careflow.db'}")
    try:
        with Session(engine) as session:
            return list(session.exec(select(AuditEntry).where(col(AuditEntry.action) == "codec-decode")).all())
    finally:
        engine.dispose()


def test_the_temporal_ui_of_make_run_shows_decoded_payloads(tmp_path: Path) -> None:
    if not CHROMIUM.exists():
        message = f"Debian's Chromium is not installed at {CHROMIUM} (apt-get install chromium)"
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)
    started = time.monotonic()
    with careflow_dev(tmp_path, demo_referrals=1, banner_timeout=60) as dev:
        ports = dev.ports
        ui = f"http://127.0.0.1:{ports['ui']}"
        coordinator = dev.token("coordinator").strip()
        with httpx.Client(timeout=10) as http:
            flows = http.get(
                f"http://127.0.0.1:{ports['api']}/flows",
                params={"pathway": "referral"},
                headers={"Authorization": f"Bearer {coordinator}"},
            ).json()["items"]
            flow_id = next(f["id"] for f in flows if f["pathway"] == "referral")
            # The UI is configured with the endpoint that holds this run's credential …
            endpoint = http.get(f"{ui}/api/v1/settings").json()["Codec"]["Endpoint"]
        assert (
            endpoint.startswith(f"http://127.0.0.1:{ports['api']}/codec/ui/") and len(endpoint.rsplit("/", 1)[1]) >= 40
        )
        credential = endpoint.rsplit("/", 1)[1]
        # … which decodes nothing else, and no other route takes it.
        with httpx.Client(timeout=10) as http:
            assert (
                http.post(f"{endpoint.rsplit('/', 1)[0]}/wrong-{credential}/decode", json={"payloads": []}).status_code
                == 401
            )
            assert http.post(f"{endpoint}/encode", json={"payloads": []}).status_code == 404
            assert (
                http.get(
                    f"http://127.0.0.1:{ports['api']}/flows", headers={"Authorization": f"Bearer {credential}"}
                ).status_code
                == 401
            )
        before = len(_codec_audit(tmp_path / "data"))

        decoded_text = asyncio.run(_history_page_text(f"{ui}/namespaces/default/workflows/referral-{flow_id}", flow_id))
        assert '"pathway": "referral"' in decoded_text, "the decoded input on the history page"
        assert f'"flow_id": "{flow_id}"' in decoded_text

        entries = _codec_audit(tmp_path / "data")[before:]
        assert entries, "the UI's decodes are audited"
        assert all(e.actor == "temporal-ui" and e.role == "dev-codec-credential" for e in entries)
        assert "dev Temporal UI credential" in entries[-1].detail and "namespace default" in entries[-1].detail
        assert time.monotonic() - started < 90
    logs = "".join(p.read_text(errors="replace") for p in (tmp_path / "data" / "logs").glob("*.log"))
    assert "POST /codec/ui/decode" in logs, "the API's access log saw the UI's decodes, without the credential"
    assert credential not in logs, "the dev UI credential in a log"


async def _history_page_text(url: str, flow_id: str) -> str:
    from playwright.async_api import async_playwright

    SHOTS.mkdir(parents=True, exist_ok=True)
    async with async_playwright() as p:
        browser = await p.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS)
        try:
            page = await browser.new_page(viewport={"width": 1366, "height": 1000})
            decodes: list[int] = []
            page.on(
                "response",
                lambda r: decodes.append(r.status) if "/codec/ui/" in r.url and r.request.method == "POST" else None,
            )
            await page.goto(url, wait_until="domcontentloaded", timeout=30_000)
            try:
                await page.get_by_text('"pathway": "referral"').first.wait_for(timeout=30_000)
            finally:
                await page.screenshot(path=str(SHOTS / "history.png"), full_page=True)
            assert decodes and all(s == 200 for s in decodes), f"the UI's calls to the codec endpoint: {decodes}"
            return await page.locator("body").inner_text()
        finally:
            await browser.close()
