"""Alerts on the real local stack: a failed run mails a real SMTP server and posts to a real HTTP
server; a stale backup raises the freshness alert; backups and metrics carry row counts in their
asset events.

The servers are the session's (aiosmtpd and http.server on free ports of 127.0.0.1, conftest's
``alert_sinks``); the alert connections ``hr_alerts_smtp`` / ``hr_alerts_webhook`` reach the stack
the way the README tells an operator to set them for `make up`: as ``AIRFLOW_CONN_HR_ALERTS_SMTP``
/ ``_WEBHOOK`` (JSON) in the environment of the process that starts it, not in the metadata
database, not in its env file. Runs are told apart by run id: whatever else fails on the shared
stack alerts too, and is ignored here.
"""

from __future__ import annotations

import html
import os
import re
import time
from datetime import datetime, timedelta, timezone
from urllib.parse import quote, urlsplit

import httpx
import pytest
from stack_support import LocalStack, local_env, stack_driver

from tests.unit.test_notifications import SmtpSink, WebhookSink, card_facts, html_body

pytestmark = [pytest.mark.stack, pytest.mark.slow, pytest.mark.postgres, pytest.mark.azurite]

FRESHNESS_DAG = "check_backup_freshness"


@pytest.fixture(scope="module")
def alerts(local_stack, alert_sinks):
    """The two servers the stack's alert connections point at: (smtp, webhook)."""
    return alert_sinks


def test_the_alert_connections_reach_the_stack_from_the_environment_of_its_start(local_stack):
    """Only the path of the README's `make up` can deliver the alerts of this module."""
    api = local_stack.api
    for conn_id in local_env.ALERT_CHANNELS.values():
        assert api.request("GET", f"/api/v2/connections/{conn_id}").status_code == 404, conn_id
    assert not local_env.alert_variables(local_stack.env)  # nor in its env file
    # Not in this process's environment after the start: the processes kept what they got.
    assert not local_env.alert_variables(os.environ)
    lines = stack_driver.alert_lines(local_stack.stack, was_running=True)
    assert lines[0] == (
        "  Failure alerts: email via hr_alerts_smtp (AIRFLOW_CONN_HR_ALERTS_SMTP from the running "
        "stack's environment), webhook via hr_alerts_webhook (AIRFLOW_CONN_HR_ALERTS_WEBHOOK from "
        "the running stack's environment)"
    ), lines


def wait_for_alerts(smtp: SmtpSink, webhook: WebhookSink, run_id: str, timeout: float = 120.0) -> tuple:
    """The mail and the webhook post about ``run_id``, once both have arrived."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        mails = [m for m in smtp.messages if run_id in html_body(m)]
        posts = [p for p in webhook.posts if card_facts(p).get("Run") == run_id]
        if mails and posts:
            return mails, posts
        time.sleep(0.5)
    pytest.fail(
        f"no alert about {run_id} within {timeout:.0f} s: {len(smtp.messages)} mails, "
        f"{len(webhook.posts)} posts ({[card_facts(p).get('Run') for p in webhook.posts]})"
    )


def trigger(stack: LocalStack, dag_id: str, conf: dict, attempts: int = 4) -> str:
    """Trigger a run; a 5xx (the SQLite metadata database busy, on a loaded machine) is retried."""
    for attempt in range(1, attempts + 1):
        response = stack.api.trigger(dag_id, conf)
        if response.status_code < 500 or attempt == attempts:
            assert response.status_code < 400, f"trigger {dag_id}: {response.status_code} {response.text}"
            return response.json()["dag_run_id"]
        time.sleep(2 * attempt)


def run_to_end(stack: LocalStack, dag_id: str, conf: dict, state: str, timeout: float = 600.0) -> dict:
    run_id = trigger(stack, dag_id, conf)
    run = stack.api.wait_for_run(dag_id, run_id, timeout=timeout)
    assert run["state"] == state, (
        f"{dag_id} {conf} ended {run['state']}:\n{stack.api.failure_report(dag_id, run_id)}"
    )
    return run


def run_to_failure(stack: LocalStack, dag_id: str, conf: dict) -> str:
    return run_to_end(stack, dag_id, conf, "failed")["dag_run_id"]


def asset_events(stack: LocalStack, dag_id: str, run_id: str) -> list[dict]:
    return stack.api.json(
        "GET",
        "/api/v2/assets/events",
        params={"source_dag_id": dag_id, "source_run_id": run_id, "limit": 100},
    )["asset_events"]


def test_a_refused_restore_alerts_by_mail_and_webhook(local_stack, alerts):
    smtp, webhook = alerts
    missing = "jobs/jobs-20000101T000000Z.avro"
    started = time.monotonic()
    run_id = run_to_failure(local_stack, "restore_table", {"table_name": "jobs", "backup": missing})
    (mail, *_), (post, *_) = wait_for_alerts(smtp, webhook, run_id)
    print(f"\n[alerts] refused restore to both alerts: {time.monotonic() - started:.1f} s")

    facts = card_facts(post)
    assert {key: facts[key] for key in ("DAG", "Table", "Run", "Failed task", "Try")} == {
        "DAG": "restore_table",
        "Table": "jobs",
        "Run": run_id,
        "Failed task": "restore",
        "Try": "1",
    }
    # "Backup '<missing>' of jobs not found ...", or "No backup of jobs exists ..." when none at all
    error = facts["Error"]
    assert error.startswith("AirflowFailException: "), error
    assert "of jobs" in error, error
    assert missing in error or "No backup of jobs" in error, error
    assert "\n" not in facts["Error"]
    card = post["attachments"][0]["content"]
    link = card["actions"][0]["url"]
    path = f"/dags/restore_table/runs/{quote(run_id)}/tasks/restore?try_number=1"
    assert urlsplit(link).path + "?" + urlsplit(link).query == path
    # The same page on this stack's UI answers (the link's host is [api] base_url's).
    page = httpx.get(local_stack.url + path, timeout=30)
    assert page.status_code == 200
    assert "<html" in page.text.lower()

    assert mail["Subject"] == "[HR pipeline] restore_table failed for jobs (task restore)"
    assert smtp.recipients[smtp.messages.index(mail)] == ["oncall@hr.test"]
    body = html_body(mail)
    assert html.escape(error) in body
    assert html.escape(path) in body
    assert run_id in body


def test_a_stale_backup_raises_the_freshness_alert_until_a_backup_is_taken(local_stack, ingested, alerts):
    smtp, webhook = alerts
    api = local_stack.api
    api.wait_for_dags([FRESHNESS_DAG], timeout=300)
    backups = local_stack.blob_service().get_container_client(local_stack.env["AZURE_BLOB_CONTAINER_BACKUPS"])
    now = datetime.now(timezone.utc)

    # The table's backups so far (the scheduled backup_tables run may have taken one) are put
    # aside: what is left is one backup 30 hours old, as after a day of failed backups.
    table = "hired_employees"
    for blob in backups.list_blobs(name_starts_with=f"{table}/"):
        backups.delete_blob(blob.name)
    stale_instant = (now - timedelta(hours=30)).replace(microsecond=0)
    stale_name = f"{table}/{table}-{stale_instant:%Y%m%dT%H%M%SZ}.avro"
    backups.upload_blob(
        stale_name,
        b"an old backup, as far as the check can tell",
        overwrite=True,
        metadata={"table": table, "instant": stale_instant.isoformat()},
    )
    api.json("PATCH", f"/api/v2/dags/{FRESHNESS_DAG}", json={"is_paused": False})
    try:
        started = time.monotonic()
        run_id = run_to_failure(local_stack, FRESHNESS_DAG, {"tables": [table]})
        (mail, *_), (post, *_) = wait_for_alerts(smtp, webhook, run_id)
        print(f"\n[alerts] stale backup to both alerts: {time.monotonic() - started:.1f} s")
        facts = card_facts(post)
        assert (facts["DAG"], facts["Table"], facts["Failed task"]) == (FRESHNESS_DAG, table, "check_backups")
        assert re.fullmatch(
            rf"StaleBackups: Stale backups \(newest older than 26\.0 h\): {table}: newest backup "
            rf"{re.escape(stale_name)} is 30\.\d h old",
            facts["Error"],
        ), facts["Error"]
        assert mail["Subject"] == f"[HR pipeline] {FRESHNESS_DAG} failed for {table} (task check_backups)"

        # A backup of the table: its asset event carries the row count; the check passes again.
        started = time.monotonic()
        backup_run = run_to_end(local_stack, "backup_tables", {"tables": [table]}, "success")
        print(f"[alerts] backup_tables of {table}: {time.monotonic() - started:.1f} s")
        events = asset_events(local_stack, "backup_tables", backup_run["dag_run_id"])
        assert [(e["name"], e["extra"]["rows"]) for e in events] == [
            (f"backups.{table}", local_stack.row_count(table))
        ]
        assert events[0]["extra"]["blob"].startswith(
            f"{local_stack.env['AZURE_BLOB_CONTAINER_BACKUPS']}/{table}/"
        )
        started = time.monotonic()
        run_to_end(local_stack, FRESHNESS_DAG, {"tables": [table]}, "success")
        print(f"[alerts] the check passes again: {time.monotonic() - started:.1f} s")
    finally:
        api.json("PATCH", f"/api/v2/dags/{FRESHNESS_DAG}", json={"is_paused": True})
        backups.delete_blob(stale_name)


def test_publish_metrics_events_carry_the_row_counts(local_stack, published):
    run_id = published["dag_run_id"]
    events = {e["name"]: e["extra"] for e in asset_events(local_stack, "publish_metrics", run_id)}
    counted = local_stack.api.return_value("publish_metrics", run_id, "record_published_row_counts")
    assert events == {f"warehouse.{name}": {"rows": rows} for name, rows in counted.items()}
    assert set(counted) == {
        "hires_by_quarter",
        "departments_above_mean",
        "quarterly_hires_2021",
        "departments_above_mean_2021",
    }
    assert counted["departments_above_mean_2021"] == 7  # the 7 departments above the 2021 mean
