"""What an operator's tools read (issue 21): /healthz, and /metrics in Prometheus's format, whose values move with
the app's work (jobs ended, each stage's seconds, live workers, refused requests)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Dict

import httpx
from gradio_client import Client
from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import AppServer, start_app


def scrape(server: AppServer, **kwargs: object) -> Dict[str, float]:
    answer = httpx.get(server.url + "metrics", timeout=30, **kwargs)  # type: ignore[arg-type]
    assert answer.status_code == 200 and answer.headers["content-type"].startswith("text/plain")
    samples: Dict[str, float] = {}
    for family in text_string_to_metric_families(answer.text):  # Prometheus's own parser: the format is right
        for sample in family.samples:
            labels = ",".join("%s=%s" % item for item in sorted(sample.labels.items()))
            samples["%s{%s}" % (sample.name, labels)] = sample.value
    return samples


def test_healthz_answers_while_the_process_serves(app_server: AppServer) -> None:
    answer = httpx.get(app_server.url + "healthz", timeout=10)
    assert answer.status_code == 200 and answer.json() == {"alive": True}


def test_metrics_move_with_the_apps_work(app_server: AppServer) -> None:
    before = scrape(app_server)
    Client(app_server.url, verbose=False).predict("piper", "joe", "Counting this one.", None, {}, "wav", {}, {}, False,
                                                   api_name="/generate")
    refused = httpx.get(app_server.url + "healthz", headers={"Host": "evil.example"}, timeout=10)
    assert refused.status_code == 421
    after = scrape(app_server)
    done = "voicegen_jobs_total{architecture=piper,state=succeeded}"
    assert after[done] == before.get(done, 0) + 1
    for stage in ("queue", "pre", "generate", "post", "encode"):
        count = "voicegen_stage_seconds_count{architecture=piper,stage=%s}" % stage
        assert after[count] == before.get(count, 0) + 1, stage
    workers = {name: value for name, value in after.items() if name.startswith("voicegen_workers{")}
    assert any("architecture=piper" in name and "kind=venv" in name and value >= 1 for name, value in workers.items())
    assert any(name.startswith("voicegen_worker_memory_bytes{") and value > 10e6 for name, value in after.items())
    host = "voicegen_rejected_requests_total{reason=host}"
    assert after[host] == before.get(host, 0) + 1
    assert "voicegen_cache_lookups_total{result=miss}" in after
    assert all(re.fullmatch(r"[a-z_]+\{.*\}", name) for name in after)


def test_the_operators_announcement_is_shown_to_every_visitor(tmp_path: Path) -> None:
    from playwright.sync_api import expect

    from tests.app.test_browser import browser_page

    app = start_app(tmp_path / "data", extra_env={"VOICEGEN_PREWARM": "",
                                                  "VOICEGEN_ANNOUNCEMENT": "**Maintenance** at 18:00 UTC <script>alert(1)</script>"})
    try:
        with browser_page(app.url) as page:
            banner = page.locator("#announcement")
            expect(banner).to_contain_text("Maintenance at 18:00 UTC", timeout=20_000)
            assert banner.locator("strong").count() == 1 and banner.locator("script").count() == 0  # Markdown, sanitised
    finally:
        app.stop()
