"""Failure alerts (hr_pipeline.ops.alerts) and backup freshness (hr_pipeline.backup.freshness).

The message is built from a callback's context as Airflow hands it over; the channels are sent to
real local servers: an SMTP server (aiosmtpd) and an HTTP server (http.server), both on free ports
of 127.0.0.1, with the connections given as ``AIRFLOW_CONN_*`` environment variables. With no
connection at all, the callback sends nothing and logs one warning saying how to set one.
"""

from __future__ import annotations

import email
import json
import logging
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from email.message import Message
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import SimpleNamespace

import pytest

from hr_pipeline.backup import freshness
from hr_pipeline.ops import alerts as notifications
from hr_pipeline.ops.alerts import FAILURE_ALERTS, Alert, build_alert, first_line, send_alerts
from tests.conftest import free_port

RUN_ID = "manual__2026-03-01T10:00:00+00:00"


# -- local servers (also used by tests/stack/test_alerts.py) ---------------------------------------


@dataclass
class SmtpSink:
    """A real SMTP server (aiosmtpd) on 127.0.0.1 that keeps every message it receives."""

    port: int = field(default_factory=free_port)
    messages: list[Message] = field(default_factory=list)
    recipients: list[list[str]] = field(default_factory=list)

    async def handle_DATA(self, server, session, envelope):  # aiosmtpd handler hook
        self.recipients.append(list(envelope.rcpt_tos))
        self.messages.append(email.message_from_bytes(envelope.original_content or envelope.content))
        return "250 Message accepted for delivery"

    def __enter__(self) -> SmtpSink:
        from aiosmtpd.controller import Controller

        self.controller = Controller(self, hostname="127.0.0.1", port=self.port)
        self.controller.start()
        return self

    def __exit__(self, *exc_info) -> None:
        self.controller.stop()

    def connection(self, **extra) -> dict:
        return {
            "conn_type": "smtp",
            "host": "127.0.0.1",
            "port": self.port,
            "extra": {
                "from_email": "airflow@hr.test",
                "to": "oncall@hr.test",
                "disable_ssl": True,
                "disable_tls": True,
                "timeout": 10,
                "retry_limit": 0,
                **extra,
            },
        }


def html_body(message: Message) -> str:
    part = next(part for part in message.walk() if part.get_content_type() == "text/html")
    return part.get_payload(decode=True).decode(part.get_content_charset() or "utf-8")


class WebhookSink:
    """A real HTTP server on 127.0.0.1 that keeps every JSON body POSTed to it; answers each
    request with the next of ``statuses`` (then 202, as a Teams workflow does)."""

    def __init__(self, statuses: tuple[int, ...] = ()):
        self.port = free_port()
        self.posts: list[dict] = []
        self.paths: list[str] = []
        self.headers: list[dict[str, str]] = []
        self.requests = 0  # answered, whatever the status
        self.statuses = list(statuses)
        sink = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                sink.requests += 1
                status = sink.statuses.pop(0) if sink.statuses else 202
                if status < 300:
                    sink.posts.append(json.loads(body))
                    sink.paths.append(self.path)
                    sink.headers.append(dict(self.headers))
                self.send_response(status)
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self.thread = threading.Thread(
            target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )

    def __enter__(self) -> WebhookSink:
        self.thread.start()
        return self

    def __exit__(self, *exc_info) -> None:
        self.server.shutdown()
        self.server.server_close()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/workflows/alerts?sig=secret-signature"

    def connection(self) -> dict:
        return {"conn_type": "http", "host": self.url}


def card_facts(post: dict) -> dict[str, str]:
    content = post["attachments"][0]["content"]
    fact_set = next(block for block in content["body"] if block["type"] == "FactSet")
    return {fact["title"]: fact["value"] for fact in fact_set["facts"]}


# -- contexts as Airflow hands them to a failure callback -------------------------------------------


def task_context(
    task_id="restore",
    conf=None,
    params=None,
    exception=None,
    map_index=-1,
    rendered_map_index=None,
    try_number=1,
    dag_id="restore_table",
) -> dict:
    ti = SimpleNamespace(
        dag_id=dag_id,
        run_id=RUN_ID,
        task_id=task_id,
        map_index=map_index,
        rendered_map_index=rendered_map_index,
        try_number=try_number,
    )
    from airflow.sdk import DAG

    return {
        "dag": DAG(dag_id, schedule=None),
        "dag_run": SimpleNamespace(dag_id=dag_id, run_id=RUN_ID, conf=conf or {}),
        "ti": ti,
        "task_instance": ti,
        "run_id": RUN_ID,
        "params": params or {},
        "exception": exception,
    }


class RefusedRestore(Exception):
    pass


@pytest.fixture
def no_alert_connections(monkeypatch):
    for name in (
        "AIRFLOW_CONN_HR_ALERTS_SMTP",
        "AIRFLOW_CONN_HR_ALERTS_WEBHOOK",
        "AIRFLOW_VAR_HR_ALERTS_EMAIL_TO",
    ):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AIRFLOW__API__BASE_URL", "https://airflow.hr.example/")


def set_connection(monkeypatch, conn_id: str, connection: dict) -> None:
    monkeypatch.setenv(f"AIRFLOW_CONN_{conn_id.upper()}", json.dumps(connection))


# -- the message ------------------------------------------------------------------------------------


def test_the_alert_names_dag_table_run_task_error_and_links_the_log(no_alert_connections):
    error = RefusedRestore(
        "No backup of jobs matches 'jobs/jobs-20200101T000000Z.avro'\nTraceback (most recent call last): ..."
    )
    alert = build_alert(task_context(conf={"table_name": "jobs", "backup": "x"}, exception=error))

    assert alert.title == "HR pipeline: restore_table failed for jobs"
    assert alert.subject == "[HR pipeline] restore_table failed for jobs (task restore)"
    assert alert.facts() == [
        ("DAG", "restore_table"),
        ("Table", "jobs"),
        ("Run", RUN_ID),
        ("Failed task", "restore"),
        ("Try", "1"),
        ("Error", "RefusedRestore: No backup of jobs matches 'jobs/jobs-20200101T000000Z.avro'"),
    ]
    # Airflow 3's UI route of a task try (its Logs tab), under [api] base_url, run id quoted.
    assert alert.log_url == (
        "https://airflow.hr.example/dags/restore_table/runs/"
        "manual__2026-03-01T10%3A00%3A00%2B00%3A00/tasks/restore?try_number=1"
    )
    text = alert.text()
    assert text.splitlines()[0] == alert.title
    assert text.endswith(f"Log: {alert.log_url}")


def test_the_log_link_matches_airflows_own(no_alert_connections):
    from airflow.models.taskinstance import TaskInstance

    ti = SimpleNamespace(
        dag_id="backup_tables", run_id=RUN_ID, task_id="backup_table", map_index=2, try_number=3
    )
    assert notifications.task_log_url(
        "https://airflow.hr.example/", "backup_tables", RUN_ID, "backup_table", 2, 3
    ) == TaskInstance.log_url.fget(ti)


def test_a_mapped_task_names_its_table_and_map_index(no_alert_connections):
    alert = build_alert(
        task_context(
            dag_id="backup_tables",
            task_id="backup_table",
            map_index=1,
            rendered_map_index="jobs",
            params={"tables": ["departments", "jobs", "hired_employees"]},
            exception=RuntimeError("warehouse unreachable"),
            try_number=3,
        )
    )
    assert alert.tables == ("jobs",)  # the failed map index's table, not every table of the run
    assert alert.task == "backup_table [jobs]"
    assert alert.log_url.endswith("/tasks/backup_table/mapped/1?try_number=3")


def test_tables_come_from_the_exception_then_conf_then_params(no_alert_connections):
    stale = freshness.StaleBackups("Stale backups: ...", ["hired_employees"])
    context = task_context(
        dag_id="check_backup_freshness",
        task_id="check_backups",
        params={"tables": ["departments", "jobs", "hired_employees"]},
        exception=stale,
    )
    assert build_alert(context).tables == ("hired_employees",)
    context = task_context(conf={"tables": ["jobs"]}, params={"tables": ["departments"]})
    assert build_alert(context).tables == ("jobs",)
    context = task_context(params={"table_name": "departments"})
    assert build_alert(context).tables == ("departments",)
    assert build_alert(task_context()).tables == ()
    assert build_alert(task_context()).title == "HR pipeline: restore_table failed"


def test_first_line_of_the_error():
    assert first_line(ValueError("\n  bad row 3  \nmore")) == "ValueError: bad row 3"
    assert first_line(KeyError()) == "KeyError"
    assert first_line(None).startswith("no error was reported")
    assert first_line("Task failed (heartbeat timeout)") == "Task failed (heartbeat timeout)"
    long = first_line(RuntimeError("x" * 2000))
    assert len(long) == notifications.ERROR_MAX_CHARS
    assert long.endswith("…")


def test_a_dag_level_context_without_a_task_still_makes_an_alert(no_alert_connections):
    from airflow.sdk import DAG

    context = {"dag": DAG("ingest_table", schedule=None), "run_id": RUN_ID, "reason": "task_failure"}
    alert = build_alert(context)
    assert (alert.dag_id, alert.run_id, alert.task, alert.log_url) == ("ingest_table", RUN_ID, None, None)
    assert alert.error == "task_failure"


def test_html_and_card_escape_nothing_away_and_inject_nothing(no_alert_connections):
    alert = build_alert(
        task_context(
            conf={"table_name": "jobs"}, exception=ValueError("<script>alert(1)</script> & {{ conf }}")
        )
    )
    body = alert.html()
    assert "<script>" not in body
    assert "&lt;script&gt;" in body
    assert "{{ conf }}" in body
    card = alert.card()
    assert card["type"] == "message"
    attachment = card["attachments"][0]
    assert attachment["contentType"] == "application/vnd.microsoft.card.adaptive"
    content = attachment["content"]
    assert (content["type"], content["version"]) == ("AdaptiveCard", "1.4")
    assert content["body"][0]["text"] == alert.title
    assert card_facts(card)["Error"] == "ValueError: <script>alert(1)</script> & {{ conf }}"
    assert content["actions"] == [
        {"type": "Action.OpenUrl", "title": "Open the task log", "url": alert.log_url}
    ]
    json.dumps(card)  # serialisable as it is


# -- off when no connection is set ----------------------------------------------------------------


def test_no_connection_no_alert_one_warning_saying_how_to_set_one(no_alert_connections, caplog):
    caplog.set_level(logging.DEBUG, logger="hr_pipeline.ops.alerts")
    started = time.monotonic()
    assert send_alerts(task_context(exception=RuntimeError("boom"))) == {}
    FAILURE_ALERTS(task_context(exception=RuntimeError("boom")))  # as Airflow calls it: no error
    assert time.monotonic() - started < 5
    records = [r for r in caplog.records if r.name == "hr_pipeline.ops.alerts"]
    assert [r.levelno for r in records] == [logging.WARNING, logging.WARNING]
    message = records[0].getMessage()
    assert "\n" not in message
    for named in (
        "hr_alerts_smtp",
        "hr_alerts_webhook",
        "AIRFLOW_CONN_HR_ALERTS_SMTP",
        "AIRFLOW_CONN_HR_ALERTS_WEBHOOK",
        "restore_table",
        RUN_ID,
    ):
        assert named in message, (named, message)


def test_the_dag_files_look_up_no_connection_when_parsed(no_alert_connections):
    """The notifier is built at parse time and reads its connections only when called."""
    notifier = notifications.FailureAlerts()
    assert (notifier.smtp_conn_id, notifier.webhook_conn_id) == ("hr_alerts_smtp", "hr_alerts_webhook")
    import inspect

    source = inspect.getsource(notifications.FailureAlerts.__init__)
    assert "get_connection" not in source
    assert "Connection" not in source


# -- the channels, on real local servers ------------------------------------------------------------


def test_webhook_posts_the_card(no_alert_connections, monkeypatch):
    with WebhookSink() as sink:
        set_connection(monkeypatch, "hr_alerts_webhook", sink.connection())
        sent = send_alerts(task_context(conf={"table_name": "jobs"}, exception=RuntimeError("boom")))
    assert sent == {"webhook": True}
    assert sink.paths == ["/workflows/alerts?sig=secret-signature"]
    assert sink.headers[0]["Content-Type"] == "application/json"
    assert sink.headers[0]["User-Agent"] == "hr-pipeline-alerts"
    facts = card_facts(sink.posts[0])
    assert facts["DAG"] == "restore_table"
    assert facts["Table"] == "jobs"
    assert facts["Error"] == "RuntimeError: boom"
    assert facts["Run"] == RUN_ID


def test_webhook_connection_as_the_http_provider_reads_it(no_alert_connections, monkeypatch):
    """Schema, host and port, or the whole URL as host; the extra's keys are headers, but for
    the provider's options (``timeout``)."""
    with WebhookSink() as sink:
        set_connection(
            monkeypatch,
            "hr_alerts_webhook",
            {
                "conn_type": "http",
                "host": "127.0.0.1",
                "port": sink.port,
                "schema": "http",
                "extra": {"X-Alert-Source": "hr-pipeline", "timeout": 5},
            },
        )
        assert send_alerts(task_context(exception=RuntimeError("boom"))) == {"webhook": True}
        set_connection(
            monkeypatch,
            "hr_alerts_webhook",
            {"conn_type": "http", "host": f"http://127.0.0.1:{sink.port}/hooks/hr"},
        )
        assert send_alerts(task_context(exception=RuntimeError("boom"))) == {"webhook": True}
    assert sink.paths == ["/", "/hooks/hr"]
    assert sink.headers[0]["X-Alert-Source"] == "hr-pipeline"
    assert "timeout" not in {name.lower() for name in sink.headers[0]}
    assert "X-Alert-Source" not in sink.headers[1]


@pytest.fixture
def quick_retries(monkeypatch):
    monkeypatch.setattr(notifications, "WEBHOOK_BACKOFF_SECONDS", 0.05)


def test_webhook_retries_a_server_error_then_delivers(
    no_alert_connections, monkeypatch, quick_retries, caplog
):
    caplog.set_level(logging.INFO, logger="hr_pipeline.ops.alerts")
    with WebhookSink(statuses=(503, 500)) as sink:
        set_connection(monkeypatch, "hr_alerts_webhook", sink.connection())
        assert send_alerts(task_context(exception=RuntimeError("boom"))) == {"webhook": True}
    assert (sink.requests, len(sink.posts)) == (3, 1)
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert warnings == [
        f"Alert not delivered to the webhook at http://127.0.0.1:{sink.port} (attempt 1 of 3): "
        "HTTP 503 Service Unavailable; retrying",
        f"Alert not delivered to the webhook at http://127.0.0.1:{sink.port} (attempt 2 of 3): "
        "HTTP 500 Internal Server Error; retrying",
    ]


def test_webhook_gives_up_after_its_attempts(no_alert_connections, monkeypatch, quick_retries, caplog):
    with WebhookSink(statuses=(503, 502, 429, 503)) as sink:
        set_connection(monkeypatch, "hr_alerts_webhook", sink.connection())
        assert send_alerts(task_context(exception=RuntimeError("boom"))) == {"webhook": False}
    assert (sink.requests, sink.posts) == (3, [])
    errors = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    assert errors == [
        f"Alert not delivered to the webhook at http://127.0.0.1:{sink.port} (attempt 3 of 3): "
        "HTTP 429 Too Many Requests"
    ]


def test_webhook_refusal_is_not_retried(no_alert_connections, monkeypatch, quick_retries, caplog):
    with WebhookSink(statuses=(400,)) as sink:
        set_connection(monkeypatch, "hr_alerts_webhook", sink.connection())
        assert send_alerts(task_context(exception=RuntimeError("boom"))) == {"webhook": False}
    assert sink.requests == 1
    errors = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    assert errors == [
        f"Alert not delivered to the webhook at http://127.0.0.1:{sink.port} (attempt 1 of 3): "
        "HTTP 400 Bad Request"
    ]


@pytest.mark.parametrize(
    ("connection", "named"),
    [
        ({"conn_type": "http", "extra": {"timeout": 2}}, "names no host"),
        ({"conn_type": "http", "extra": {"url": "http://127.0.0.1:9/hook"}}, "has extra 'url'"),
        (
            {"conn_type": "http", "host": "127.0.0.1", "extra": {"endpoint": "hook", "attempts": 2}},
            "has extra 'attempts', 'endpoint'",
        ),
    ],
)
def test_a_webhook_connection_the_provider_would_misread_is_refused_saying_how_to_set_it(
    no_alert_connections, monkeypatch, caplog, connection, named
):
    set_connection(monkeypatch, "hr_alerts_webhook", connection)
    assert send_alerts(task_context(exception=RuntimeError("boom"))) == {"webhook": False}
    (error,) = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    assert error.startswith(f"Alert connection hr_alerts_webhook {named}: no webhook post. "), error
    assert "whole URL in its host" in error


def test_a_delivery_error_is_logged_never_raised(no_alert_connections, monkeypatch, quick_retries, caplog):
    caplog.set_level(logging.INFO, logger="hr_pipeline.ops.alerts")
    closed = free_port()  # nothing listens there
    set_connection(
        monkeypatch,
        "hr_alerts_webhook",
        {
            "conn_type": "http",
            "host": f"http://127.0.0.1:{closed}/hook?sig=do-not-log",
            "extra": {"timeout": 2},
        },
    )
    set_connection(
        monkeypatch,
        "hr_alerts_smtp",
        {
            "conn_type": "smtp",
            "host": "127.0.0.1",
            "port": closed,
            "extra": {
                "from_email": "airflow@hr.test",
                "to": "oncall@hr.test",
                "disable_ssl": True,
                "disable_tls": True,
                "timeout": 2,
                "retry_limit": 0,
            },
        },
    )
    FAILURE_ALERTS(task_context(exception=RuntimeError("boom")))  # returns, does not raise
    assert send_alerts(task_context(exception=RuntimeError("boom"))) == {"email": False, "webhook": False}
    errors = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    assert any(
        f"Alert not delivered to the webhook at http://127.0.0.1:{closed} (attempt 3 of 3): ConnectionError"
        in m
        for m in errors
    ), errors
    assert any("Alert email to oncall@hr.test through hr_alerts_smtp not sent" in m for m in errors)
    assert not any("do-not-log" in r.getMessage() for r in caplog.records)
    # What the hook itself logs of the URL goes through the task log's masking processor.
    from airflow.sdk.log import mask_logs

    hook_line = f"Max retries exceeded with url: /hook?sig=do-not-log (port {closed})"
    assert "do-not-log" not in mask_logs(None, "warning", {"event": hook_line})["event"]


def test_email_through_the_smtp_provider(no_alert_connections, monkeypatch):
    with SmtpSink() as smtp:
        set_connection(monkeypatch, "hr_alerts_smtp", smtp.connection(to="a@hr.test; b@hr.test"))
        sent = send_alerts(
            task_context(conf={"table_name": "jobs"}, exception=RuntimeError("no backup of jobs"))
        )
    assert sent == {"email": True}
    assert smtp.recipients == [["a@hr.test", "b@hr.test"]]
    message = smtp.messages[0]
    assert message["Subject"] == "[HR pipeline] restore_table failed for jobs (task restore)"
    assert message["From"] == "airflow@hr.test"
    body = html_body(message)
    assert "RuntimeError: no backup of jobs" in body
    assert RUN_ID in body
    assert "/dags/restore_table/runs/manual__2026-03-01T10%3A00%3A00%2B00%3A00/tasks/restore" in body


def test_email_recipients_from_the_variable(no_alert_connections, monkeypatch):
    monkeypatch.setenv("AIRFLOW_VAR_HR_ALERTS_EMAIL_TO", "hr-ops@hr.test")
    with SmtpSink() as smtp:
        connection = smtp.connection()
        del connection["extra"]["to"]
        set_connection(monkeypatch, "hr_alerts_smtp", connection)
        assert send_alerts(task_context(exception=RuntimeError("boom"))) == {"email": True}
    assert smtp.recipients == [["hr-ops@hr.test"]]


def test_both_channels_at_once(no_alert_connections, monkeypatch):
    with SmtpSink() as smtp, WebhookSink() as hook:
        set_connection(monkeypatch, "hr_alerts_smtp", smtp.connection())
        set_connection(monkeypatch, "hr_alerts_webhook", hook.connection())
        FAILURE_ALERTS(task_context(exception=RuntimeError("boom")))
    assert len(smtp.messages) == 1
    assert len(hook.posts) == 1


# -- backup freshness ------------------------------------------------------------------------------


@dataclass
class ListedBlob:
    name: str
    size: int = 10
    metadata: dict = field(default_factory=dict)


class ListingStore:
    """Just the one call freshness makes of a BlobStore: list(container, prefix)."""

    def __init__(self, names):
        self.names = names

    def list(self, container, prefix=""):
        return [ListedBlob(name) for name in sorted(self.names) if name.startswith(prefix)]


NOW = datetime(2026, 3, 2, 12, 0, tzinfo=timezone.utc)


def test_fresh_backups_pass(sqlite_warehouse):
    store = ListingStore(
        [
            "departments/departments-20260301T120000Z.avro",  # 24 h
            "departments/departments-20260302T020000Z.avro",  # 10 h
            "jobs/jobs-20260302T110000Z.avro",
            "hired_employees/hired_employees-20260301T110000Z.avro",
        ]
    )  # 25 h
    results = freshness.check_freshness(now=NOW, store=store, container="backups", warehouse=sqlite_warehouse)
    assert [(r["table"], r["age_hours"], r["stale"]) for r in results] == [
        ("departments", 10.0, False),
        ("jobs", 1.0, False),
        ("hired_employees", 25.0, False),
    ]
    assert results[0]["newest"] == "departments/departments-20260302T020000Z.avro"


def test_a_stale_or_missing_backup_fails_naming_the_tables_and_ages(sqlite_warehouse):
    store = ListingStore(
        [
            "departments/departments-20260302T020000Z.avro",
            "hired_employees/hired_employees-20260228T120000Z.avro",  # 48 h
            "hired_employees/not-a-backup.txt",
        ]
    )
    with pytest.raises(freshness.StaleBackups) as raised:
        freshness.check_freshness(now=NOW, store=store, container="backups", warehouse=sqlite_warehouse)
    assert raised.value.tables == ("jobs", "hired_employees")
    assert str(raised.value) == (
        "Stale backups (newest older than 26.0 h): jobs: no backup; hired_employees: newest backup "
        "hired_employees/hired_employees-20260228T120000Z.avro is 48.0 h (2.0 days) old"
    )
    from airflow.sdk.exceptions import AirflowFailException

    assert isinstance(raised.value, AirflowFailException)  # not retried


def test_the_limit_is_26_hours(sqlite_warehouse):
    assert freshness.MAX_BACKUP_AGE == timedelta(hours=26)
    store = ListingStore(["jobs/jobs-20260301T100000Z.avro"])  # 26 h exactly: still fresh
    assert (
        freshness.check_freshness(["jobs"], now=NOW, store=store, warehouse=sqlite_warehouse)[0]["stale"]
        is False
    )
    with pytest.raises(freshness.StaleBackups):
        freshness.check_freshness(
            ["jobs"], now=NOW + timedelta(seconds=1), store=store, warehouse=sqlite_warehouse
        )


def test_a_journal_gap_fails_the_check_naming_the_load(sqlite_warehouse):
    """A load after the oldest backup whose archived rows are gone: a restore as of an instant
    after it would be refused, so the check fails, names that load and says to take a backup."""
    from hr_pipeline.storage.layout import journal_rows_name
    from hr_pipeline.warehouse import journal

    names = {}
    for run, source in (("run-1", "incoming/jobs/a.csv"), ("run-2", "incoming/jobs/b.csv")):
        names[run] = journal_rows_name("jobs", run, source, run.encode().hex() * 8)
        journal.record(
            sqlite_warehouse,
            table_name="jobs",
            kind=journal.LOAD,
            run_id=run,
            source=source,
            rows=3,
            rows_file=names[run],
            rows_sha256="0" * 64,
        )
    whole = ListingStore(["jobs/jobs-20260302T110000Z.avro", *names.values()])
    assert (
        freshness.check_freshness(["jobs"], now=NOW, store=whole, warehouse=sqlite_warehouse)[0][
            "journal_gap"
        ]
        is None
    )
    store = ListingStore(["jobs/jobs-20260302T110000Z.avro", names["run-1"]])
    with pytest.raises(freshness.StaleBackups) as raised:
        freshness.check_freshness(["jobs"], now=NOW, store=store, warehouse=sqlite_warehouse)
    message = str(raised.value)
    assert "jobs: 1 journaled load(s) cannot be replayed" in message
    assert "journal 2 (load of incoming/jobs/b.csv by run run-2" in message
    assert names["run-2"] in message
    assert "take one now" in message
    assert raised.value.tables == ("jobs",)


def test_the_freshness_alert_names_the_stale_tables(no_alert_connections):
    stale = freshness.StaleBackups(
        "Stale backups (newest older than 26.0 h): hired_employees: no backup", ["hired_employees"]
    )
    alert = build_alert(
        task_context(
            dag_id="check_backup_freshness",
            task_id="check_backups",
            params={"tables": list(notifications_tables())},
            exception=stale,
        )
    )
    assert isinstance(alert, Alert)
    assert alert.title == "HR pipeline: check_backup_freshness failed for hired_employees"
    assert alert.error == (
        "StaleBackups: Stale backups (newest older than 26.0 h): hired_employees: no backup"
    )


def notifications_tables():
    from hr_pipeline.contract.tables import TABLE_NAMES

    return TABLE_NAMES


# -- the wiring -------------------------------------------------------------------------------------


def test_every_task_of_every_dag_alerts_on_failure():
    from pathlib import Path

    from airflow.dag_processing.dagbag import DagBag

    bag = DagBag(dag_folder=Path(__file__).resolve().parents[2] / "dags")
    assert bag.import_errors == {}
    assert {
        "ingest_table",
        "backup_tables",
        "restore_table",
        "publish_metrics",
        "check_backup_freshness",
    } <= set(bag.dag_ids)
    for dag_id, dag in bag.dags.items():
        for task in dag.tasks:
            callbacks = task.on_failure_callback
            callbacks = callbacks if isinstance(callbacks, list) else [callbacks]
            assert any(isinstance(c, notifications.FailureAlerts) for c in callbacks), (
                f"{dag_id}.{task.task_id} sends no failure alert"
            )
