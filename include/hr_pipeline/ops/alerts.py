"""Failure alerts: every DAG's ``on_failure_callback``, by email and to a chat webhook.

``FAILURE_ALERTS`` (a ``FailureAlerts`` notifier, an Airflow ``BaseNotifier``) is in each DAG's
``default_args``, so it runs when a task fails for good (after its retries; at once for an
``AirflowFailException`` such as a refused restore), in the task's own process, where the error is
known. It builds one ``Alert`` from the callback's context and sends it through each channel whose
connection exists, looked up when it runs (never when a DAG file is parsed):

- ``hr_alerts_smtp`` (type ``smtp``): email through the SMTP provider's ``SmtpNotifier``. The
  recipients are the connection's extra ``to`` (a list, or addresses separated by ``,`` / ``;``),
  else the Variable ``hr_alerts_email_to``; the sender is the extra ``from_email``.
- ``hr_alerts_webhook`` (type ``http``): an Adaptive Card POSTed as JSON (Microsoft Teams workflows
  "when a Teams webhook request is received" take exactly this) through the HTTP provider's
  ``HttpHook``, which reads the connection as for any HTTP operator: the URL is the host when it
  is a whole URL (``https://.../invoke?...&sig=...``), else ``<schema>://<host>[:<port>]`` (schema
  ``http`` when unset, as the provider has it); login and password are basic auth; the extra's
  keys are request headers, but for the provider's options (``timeout`` in seconds, 10 when unset;
  ``proxies``, ``verify``, ...). A network error, a timeout, 408, 429 or 5xx is tried again, 3
  attempts in all, after 1 s then 2 s (``run_with_advanced_retry``). The URL's path and query,
  where a webhook keeps its signature, are never logged here and are masked in the task log.

With neither connection the callback sends nothing and logs one warning naming both connections
and how to set them. A channel that fails (server down, refused, timeout) is logged and never
fails the callback, nor stops the other channel.

The alert names the DAG, the table(s) (the exception's ``tables`` when it has them, else the run's
conf / params ``table_name`` or ``tables``), the run id, the failed task (with its map index label),
the try, the first line of the error, and a link to the task's log in the UI:
``{[api] base_url}/dags/{dag_id}/runs/{run_id}/tasks/{task_id}[/mapped/{i}]?try_number={n}``, the
pattern of Airflow 3's own ``TaskInstance.log_url``.
"""

from __future__ import annotations

import html
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import timedelta
from typing import Any
from urllib.parse import quote, urlsplit

from airflow.sdk import BaseNotifier

log = logging.getLogger(__name__)

SMTP_CONN_ID = "hr_alerts_smtp"
WEBHOOK_CONN_ID = "hr_alerts_webhook"
EMAIL_TO_VARIABLE = "hr_alerts_email_to"
DEFAULT_BASE_URL = "http://localhost:8080/"
PRODUCT = "HR pipeline"
ERROR_MAX_CHARS = 500

WEBHOOK_TIMEOUT_SECONDS = 10.0  # unless the connection's extra sets ``timeout``
WEBHOOK_ATTEMPTS = 3
WEBHOOK_BACKOFF_SECONDS = 1.0  # doubled after each failed attempt
RETRIED_STATUSES = (408, 429)  # and every 5xx
# Extra keys that read as settings of a URL or of the retries, which the HTTP provider would send
# as request headers instead (a number even fails the request): refused, naming them.
NOT_HEADERS = frozenset({"url", "endpoint", "attempts"})
URL_SECRET_MIN_CHARS = 8  # a shorter path or query holds no credential, and masking it hides common text


# -- the alert -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Alert:
    """What one failure alert says, whatever the channel."""

    dag_id: str
    run_id: str
    task: str | None  # "restore", "backup_table [jobs]"
    error: str  # the first line of the error
    log_url: str | None
    tables: tuple[str, ...] = ()
    try_number: int | None = None

    @property
    def headline(self) -> str:
        what = f" for {', '.join(self.tables)}" if self.tables else ""
        return f"{self.dag_id} failed{what}"

    @property
    def title(self) -> str:
        return f"{PRODUCT}: {self.headline}"

    @property
    def subject(self) -> str:
        task = f" (task {self.task})" if self.task else ""
        return f"[{PRODUCT}] {self.headline}{task}"

    def facts(self) -> list[tuple[str, str]]:
        facts = [("DAG", self.dag_id)]
        if self.tables:
            facts.append(("Table" if len(self.tables) == 1 else "Tables", ", ".join(self.tables)))
        facts.append(("Run", self.run_id))
        if self.task:
            facts.append(("Failed task", self.task))
        if self.try_number:
            facts.append(("Try", str(self.try_number)))
        facts.append(("Error", self.error))
        return facts

    def text(self) -> str:
        """Plain text: the title, one ``name: value`` line per fact, the log link."""
        lines = [self.title, *(f"{name}: {value}" for name, value in self.facts())]
        if self.log_url:
            lines.append(f"Log: {self.log_url}")
        return "\n".join(lines)

    def html(self) -> str:
        """The email's body: the title, a table of the facts, the log link (all escaped)."""
        rows = "".join(
            f'<tr><th align="left" style="padding-right:1em">{html.escape(name)}</th>'
            f"<td>{html.escape(value)}</td></tr>"
            for name, value in self.facts()
        )
        link = (
            f'<p><a href="{html.escape(self.log_url, quote=True)}">Open the task log</a> '
            f"({html.escape(self.log_url)})</p>"
            if self.log_url
            else ""
        )
        return f"<html><body><h3>{html.escape(self.title)}</h3><table>{rows}</table>{link}</body></html>"

    def card(self) -> dict[str, Any]:
        """The webhook's JSON: a message with one Adaptive Card (what Teams workflows accept)."""
        content: dict[str, Any] = {
            "$schema": "http://adaptivecards.io/schemas/adaptive-card.json",
            "type": "AdaptiveCard",
            "version": "1.4",
            "msteams": {"width": "Full"},
            "body": [
                {
                    "type": "TextBlock",
                    "text": self.title,
                    "weight": "Bolder",
                    "size": "Medium",
                    "color": "Attention",
                    "wrap": True,
                },
                {
                    "type": "FactSet",
                    "facts": [{"title": name, "value": value} for name, value in self.facts()],
                },
            ],
        }
        if self.log_url:
            content["actions"] = [
                {"type": "Action.OpenUrl", "title": "Open the task log", "url": self.log_url}
            ]
        return {
            "type": "message",
            "summary": self.title,
            "attachments": [
                {
                    "contentType": "application/vnd.microsoft.card.adaptive",
                    "contentUrl": None,
                    "content": content,
                }
            ],
        }


def first_line(error: Any) -> str:
    """The first non-empty line of an error, prefixed with its type when it is an exception."""
    if error is None or error == "":
        return (
            "no error was reported (the task's process may have been killed or lost its "
            "heartbeat): see the task log"
        )
    text = str(error)
    line = next((part.strip() for part in text.splitlines() if part.strip()), "")
    if isinstance(error, BaseException):
        line = f"{type(error).__name__}: {line}" if line else type(error).__name__
    line = _redact(line)
    return line if len(line) <= ERROR_MAX_CHARS else line[: ERROR_MAX_CHARS - 1] + "…"


def _redact(text: str) -> str:
    """Mask the secrets Airflow knows of in this process (connection passwords, ...)."""
    try:
        # Airflow has no public redact; without it the alert goes unmasked rather than not at all.
        from airflow.sdk._shared.secrets_masker import redact  # noqa: TID251
    except ImportError:  # pragma: no cover - another SDK layout
        return text
    try:
        return str(redact(text))
    except Exception:  # noqa: BLE001 - masking is best effort, never a reason to lose the alert
        return text


def api_base_url() -> str:
    """``[api] base_url``, as Airflow's own task log links use it."""
    try:
        from airflow.sdk.configuration import conf

        return conf.get("api", "base_url", fallback=DEFAULT_BASE_URL) or DEFAULT_BASE_URL
    except Exception:  # noqa: BLE001 - masking is best effort, never a reason to lose the alert
        return DEFAULT_BASE_URL


def task_log_url(
    base_url: str,
    dag_id: str,
    run_id: str,
    task_id: str,
    map_index: int | None = None,
    try_number: int | None = None,
) -> str:
    """The UI page of a task try (its Logs tab), as ``TaskInstance.log_url`` builds it."""
    mapped = f"/mapped/{map_index}" if map_index is not None and map_index >= 0 else ""
    tried = f"?try_number={try_number}" if try_number else ""
    return (
        f"{base_url.rstrip('/')}/dags/{quote(dag_id)}/runs/{quote(run_id)}/tasks/"
        f"{quote(task_id)}{mapped}{tried}"
    )


def _tables_of(value: Any) -> tuple[str, ...]:
    if isinstance(value, str) and value:
        return (value,)
    if isinstance(value, (list, tuple)):
        return tuple(str(item) for item in value if item)
    return ()


def tables_in(context: Mapping[str, Any], exception: Any = None) -> tuple[str, ...]:
    """The table(s) a failure is about: the exception's ``tables``, else the failed task's map
    index label when it is a table (``backup_table [jobs]``), else the run's conf, else params."""
    from hr_pipeline.contract.tables import TABLE_NAMES

    tables = _tables_of(getattr(exception, "tables", None))
    if tables:
        return tables
    ti = context.get("ti") or context.get("task_instance")
    label = getattr(ti, "rendered_map_index", None)
    if label in TABLE_NAMES:
        return (label,)
    dag_run = context.get("dag_run")
    sources = [getattr(dag_run, "conf", None) or {}, context.get("params") or {}]
    for source in sources:
        for key in ("table_name", "tables"):
            try:
                tables = _tables_of(source.get(key))
            except Exception:  # noqa: BLE001 - masking is best effort, never a reason to lose the alert
                tables = ()
            if tables:
                return tables
    return ()


def build_alert(context: Mapping[str, Any]) -> Alert:
    """The alert for a failure callback's context (a task's, or a DAG's from the dag-processor)."""
    ti = context.get("ti") or context.get("task_instance")
    dag = context.get("dag")
    dag_run = context.get("dag_run")
    dag_id = (
        getattr(dag, "dag_id", None) or getattr(ti, "dag_id", None) or getattr(dag_run, "dag_id", None) or "?"
    )
    run_id = context.get("run_id") or getattr(ti, "run_id", None) or getattr(dag_run, "run_id", None) or "?"
    exception = context.get("exception")
    error = exception if exception is not None else context.get("reason")

    task_label = log_url = None
    try_number = None
    task_id = getattr(ti, "task_id", None)
    if task_id:
        map_index = getattr(ti, "map_index", None)
        label = getattr(ti, "rendered_map_index", None)
        if label is None and isinstance(map_index, int) and map_index >= 0:
            label = str(map_index)
        task_label = f"{task_id} [{label}]" if label else task_id
        try_number = getattr(ti, "try_number", None)
        try_number = try_number if isinstance(try_number, int) and try_number > 0 else None
        log_url = task_log_url(
            api_base_url(),
            dag_id,
            run_id,
            task_id,
            map_index if isinstance(map_index, int) else None,
            try_number,
        )
    return Alert(
        dag_id=dag_id,
        run_id=run_id,
        task=task_label,
        error=first_line(error),
        log_url=log_url,
        tables=tables_in(context, exception),
        try_number=try_number,
    )


# -- connections (looked up when a callback runs) --------------------------------------------------


def get_connection(conn_id: str):
    """The connection, or None when it is not defined anywhere (env, secrets backend, database)."""
    from airflow.sdk import Connection
    from airflow.sdk.exceptions import AirflowNotFoundException

    try:
        return Connection.get(conn_id)
    except AirflowNotFoundException:
        return None
    except Exception as error:  # noqa: BLE001 - a broken backend must not cost the other channel
        log.warning(
            "Alert connection %s could not be read (%s: %s): that channel is skipped",
            conn_id,
            type(error).__name__,
            error,
        )
        return None


def _extra(connection) -> dict[str, Any]:
    try:
        extra = connection.extra_dejson
    except Exception:  # noqa: BLE001 - masking is best effort, never a reason to lose the alert
        return {}
    return extra if isinstance(extra, dict) else {}


def email_recipients(connection) -> list[str]:
    """The extra's ``to``, else the ``hr_alerts_email_to`` Variable; a list of addresses."""
    to = _extra(connection).get("to")
    if not to:
        from airflow.sdk import Variable

        try:
            to = Variable.get(EMAIL_TO_VARIABLE, default=None)
        except Exception:  # noqa: BLE001 - masking is best effort, never a reason to lose the alert
            to = None
    if isinstance(to, str):
        to = [part.strip() for part in to.replace(";", ",").split(",")]
    return [address for address in (to or []) if address]


def _where(url: str) -> str:
    """A URL without its path and query (which may hold a signature): safe to log."""
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}"


def _url_secrets(url: str) -> list[str]:
    """The parts of a webhook URL that may be its credential: the query (a Teams workflow's
    ``sig``) and the path (a Slack-style token), each when long enough to name one."""
    parts = urlsplit(url)
    return [part for part in (parts.query, parts.path) if len(part) >= URL_SECRET_MIN_CHARS]


def _hide(text: str, secrets: list[str]) -> str:
    for secret in secrets:
        text = text.replace(secret, "***")
    return text


# -- channels ------------------------------------------------------------------------------------


def _retried(response) -> bool:
    return response.status_code in RETRIED_STATUSES or response.status_code >= 500


class _Retries:
    """``run_with_advanced_retry``'s tenacity settings for one post: a network error, a timeout,
    408, 429 or 5xx is tried again after ``WEBHOOK_BACKOFF_SECONDS``, doubled each time,
    ``attempts`` in all; each failed attempt but the last is logged as it happens."""

    def __init__(self, attempts: int, where: str, secrets: list[str]):
        self.attempts, self.where, self.secrets = attempts, where, secrets
        self.made = 0

    def problem(self, outcome) -> str:
        if outcome.failed:
            error = outcome.exception()
            return _hide(f"{type(error).__name__}: {error}", self.secrets)
        response = outcome.result()
        return f"HTTP {response.status_code} {response.reason}"

    def _count(self, state) -> None:
        self.made = state.attempt_number

    def _log_retry(self, state) -> None:
        log.warning(
            "Alert not delivered to the webhook at %s (attempt %d of %d): %s; retrying",
            self.where,
            state.attempt_number,
            self.attempts,
            self.problem(state.outcome),
        )

    def settings(self) -> dict[str, Any]:
        import requests
        import tenacity

        return {
            "stop": tenacity.stop_after_attempt(self.attempts),
            "wait": tenacity.wait_exponential(multiplier=WEBHOOK_BACKOFF_SECONDS, exp_base=2, min=0),
            "retry": tenacity.retry_if_exception_type((requests.ConnectionError, requests.Timeout))
            | tenacity.retry_if_result(_retried),
            "before": self._count,
            "before_sleep": self._log_retry,
            # The last attempt's own response or error, not tenacity's RetryError around it.
            "retry_error_callback": lambda state: state.outcome.result(),
        }


def send_webhook(alert: Alert, connection) -> bool:
    """POST the alert's card through the HTTP provider's ``HttpHook`` (see the module's
    docstring). Never raises: returns whether the server accepted it, logging each failure."""
    misplaced = sorted(set(_extra(connection)) & NOT_HEADERS)
    if misplaced or not (connection.host or "").strip():
        log.error(
            "Alert connection %s %s: no webhook post. Put the webhook's whole URL in its host (or "
            "schema, host and port); the HTTP provider sends the extra's keys as request headers, "
            "all but its options such as timeout",
            connection.conn_id,
            f"has extra {', '.join(map(repr, misplaced))}" if misplaced else "names no host",
        )
        return False
    retries = _Retries(max(1, WEBHOOK_ATTEMPTS), connection.conn_id, [])
    try:
        from airflow.providers.http.hooks.http import HttpHook
        from airflow.sdk.log import mask_secret

        hook = HttpHook(method="POST", http_conn_id=connection.conn_id)
        url = hook.url_from_endpoint(None)
        retries.where, retries.secrets = _where(url), _url_secrets(url)
        for secret in retries.secrets:
            # Masked in the task log: the hook logs a connection error with the URL it tried.
            mask_secret(secret)
        # The connection's own ``timeout`` wins; the status is judged here, for the retries.
        options: dict[str, Any] = {"check_response": False}
        if "timeout" not in _extra(connection):
            options["timeout"] = WEBHOOK_TIMEOUT_SECONDS
        response = hook.run_with_advanced_retry(
            retries.settings(),
            json=alert.card(),
            headers={"User-Agent": "hr-pipeline-alerts"},
            extra_options=options,
        )
    except Exception as error:  # noqa: BLE001 - a broken backend must not cost the other channel
        problem = _hide(f"{type(error).__name__}: {error}", retries.secrets)
    else:
        if response.ok:
            log.info("Alert posted to the webhook at %s: HTTP %s", retries.where, response.status_code)
            return True
        problem = f"HTTP {response.status_code} {response.reason}"
    log.error(
        "Alert not delivered to the webhook at %s (attempt %d of %d): %s",
        retries.where,
        max(1, retries.made),
        retries.attempts,
        problem,
    )
    return False


def send_email(alert: Alert, connection, context: Mapping[str, Any]) -> bool:
    """Through the SMTP provider's ``SmtpNotifier``. Never raises: returns whether it was sent."""
    to = email_recipients(connection)
    if not to:
        log.error(
            "Alert connection %s has no recipients (extra 'to', or the Variable %s): no email",
            connection.conn_id,
            EMAIL_TO_VARIABLE,
        )
        return False
    try:
        from airflow.providers.smtp.notifications.smtp import SmtpNotifier

        # Built here, for this one alert: SmtpNotifier fills its own fields in as it sends. Its
        # notify() is called directly, so the subject and body are sent as they are (an error
        # message holding "{{" is not rendered as a template).
        notifier = SmtpNotifier(
            to=to,
            from_email=_extra(connection).get("from_email"),
            subject=alert.subject,
            html_content=alert.html(),
            smtp_conn_id=connection.conn_id,
        )
        notifier.notify(dict(context))
    except Exception as error:  # noqa: BLE001 - a broken backend must not cost the other channel
        log.error(
            "Alert email to %s through %s not sent: %s: %s",
            ", ".join(to),
            connection.conn_id,
            type(error).__name__,
            error,
        )
        return False
    log.info("Alert emailed to %s through %s", ", ".join(to), connection.conn_id)
    return True


class FailureAlerts(BaseNotifier):
    """Every DAG's ``on_failure_callback``: the alert by email and to the webhook, each when its
    connection exists at run time; nothing but one warning when neither does."""

    def __init__(self, smtp_conn_id: str = SMTP_CONN_ID, webhook_conn_id: str = WEBHOOK_CONN_ID, **kwargs):
        super().__init__(**kwargs)
        self.smtp_conn_id = smtp_conn_id
        self.webhook_conn_id = webhook_conn_id

    def notify(self, context) -> None:
        send_alerts(context, self.smtp_conn_id, self.webhook_conn_id)


def connection_variable(conn_id: str) -> str:
    """The environment variable Airflow reads a connection from: ``AIRFLOW_CONN_<ID>``."""
    return f"AIRFLOW_CONN_{conn_id.upper()}"


def _failure_label(context: Mapping[str, Any]) -> str:
    """``<dag> run <run> task <task>`` for a log line; never raises."""
    try:
        alert = build_alert(context)
    except Exception:  # noqa: BLE001 - masking is best effort, never a reason to lose the alert
        return "this failure"
    return f"{alert.dag_id} run {alert.run_id}" + (f" task {alert.task}" if alert.task else "")


def send_alerts(
    context: Mapping[str, Any], smtp_conn_id: str = SMTP_CONN_ID, webhook_conn_id: str = WEBHOOK_CONN_ID
) -> dict[str, bool]:
    """Send the alert of ``context`` through every configured channel; return channel -> sent."""
    smtp = get_connection(smtp_conn_id)
    webhook = get_connection(webhook_conn_id)
    if smtp is None and webhook is None:
        # A warning, not a debug line: a failure that alerts nobody must show in the task log.
        log.warning(
            "No failure alert sent for %s: neither alert connection %s nor %s exists; set %s and/or %s "
            "(a JSON connection) in the environment of the Airflow processes (`make up` passes them on) "
            "or create them in Admin > Connections or the secrets backend",
            _failure_label(context),
            smtp_conn_id,
            webhook_conn_id,
            connection_variable(smtp_conn_id),
            connection_variable(webhook_conn_id),
        )
        return {}
    try:
        alert = build_alert(context)
    except Exception:
        log.exception("The failure alert could not be built: none sent")
        return {}
    log.info("Sending the failure alert: %s", alert.text().replace("\n", " | "))
    sent = {}
    if smtp is not None:
        sent["email"] = send_email(alert, smtp, context)
    if webhook is not None:
        sent["webhook"] = send_webhook(alert, webhook)
    return sent


# The callback the DAGs put in their default_args (one instance: it keeps no state per alert).
FAILURE_ALERTS = FailureAlerts()


def task_defaults(retry_delay: timedelta | None = None, retries: int = 2) -> dict:
    """The ``default_args`` of every DAG: failure alerts, and retries for passing faults (none
    when ``retry_delay`` is None)."""
    if retry_delay is None:
        return {"on_failure_callback": FAILURE_ALERTS}
    return {"retries": retries, "retry_delay": retry_delay, "on_failure_callback": FAILURE_ALERTS}
