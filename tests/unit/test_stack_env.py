"""The environment the processes of a local stack get (hr_pipeline.local.stack), and what `make up`
says about failure alerts.

The caller's Airflow settings (``AIRFLOW__*``, ``AIRFLOW_CONN_*``) stay out of the stack, except
the alert connections ``AIRFLOW_CONN_HR_ALERTS_*``: the README tells an operator to switch alerts
on by exporting them before `make up`.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from hr_pipeline.local import env as local_env
from hr_pipeline.local import stack as stack_driver

PROJECT_ROOT = Path(__file__).resolve().parents[2]


SMTP = json.dumps({"conn_type": "smtp", "host": "127.0.0.1", "port": 2525, "extra": {"to": "oncall@hr.test"}})
WEBHOOK = json.dumps({"conn_type": "http", "host": "http://127.0.0.1:9/hook?sig=secret"})


@pytest.fixture
def stack(tmp_path) -> stack_driver.Stack:
    stack = stack_driver.Stack(stack_driver.StackConfig(state_dir=tmp_path / "state", api_port=18080))
    stack.write_env()
    return stack


def test_the_callers_alert_connections_reach_the_stack_and_nothing_else_of_its_airflow(stack, monkeypatch):
    monkeypatch.setenv("AIRFLOW_CONN_HR_ALERTS_SMTP", SMTP)
    monkeypatch.setenv("AIRFLOW_CONN_HR_ALERTS_WEBHOOK", WEBHOOK)
    monkeypatch.setenv("AIRFLOW_CONN_X", "http://caller-only")
    monkeypatch.setenv("AIRFLOW_CONN_WAREHOUSE", "sqlite:////caller/warehouse.db")
    monkeypatch.setenv("AIRFLOW__X", "caller-only")
    monkeypatch.setenv("AIRFLOW__CORE__DAGS_FOLDER", "/caller/dags")

    env = stack.process_env()

    assert env["AIRFLOW_CONN_HR_ALERTS_SMTP"] == SMTP
    assert env["AIRFLOW_CONN_HR_ALERTS_WEBHOOK"] == WEBHOOK
    assert "AIRFLOW_CONN_X" not in env
    assert "AIRFLOW__X" not in env
    written = local_env.read_env_file(stack.config.env_file)
    assert env["AIRFLOW_CONN_WAREHOUSE"] == written["AIRFLOW_CONN_WAREHOUSE"]
    assert env["AIRFLOW__CORE__DAGS_FOLDER"] == str(PROJECT_ROOT / "dags")
    # Passed to the processes, not written into the file: unset, they are gone at the next start.
    assert not local_env.alert_variables(written)


def test_alert_connections_in_the_env_file_reach_the_stack_and_the_callers_win(stack, monkeypatch):
    for name in ("AIRFLOW_CONN_HR_ALERTS_SMTP", "AIRFLOW_CONN_HR_ALERTS_WEBHOOK"):
        monkeypatch.delenv(name, raising=False)
    written = local_env.read_env_file(stack.config.env_file)
    local_env.write_env(
        stack.config.env_file,
        {**written, "AIRFLOW_CONN_HR_ALERTS_SMTP": SMTP, "AIRFLOW_CONN_HR_ALERTS_WEBHOOK": WEBHOOK},
    )
    assert stack.process_env()["AIRFLOW_CONN_HR_ALERTS_WEBHOOK"] == WEBHOOK

    mine = json.dumps({"conn_type": "http", "extra": {"url": "https://mine.test/hook"}})
    monkeypatch.setenv("AIRFLOW_CONN_HR_ALERTS_WEBHOOK", mine)
    env = stack.process_env()
    assert (env["AIRFLOW_CONN_HR_ALERTS_SMTP"], env["AIRFLOW_CONN_HR_ALERTS_WEBHOOK"]) == (SMTP, mine)


def test_the_channels_are_those_the_notifier_looks_up():
    from hr_pipeline.ops import alerts as notifications

    assert local_env.ALERT_CHANNELS == {
        "email": notifications.SMTP_CONN_ID,
        "webhook": notifications.WEBHOOK_CONN_ID,
    }
    for conn_id in local_env.ALERT_CHANNELS.values():
        variable = notifications.connection_variable(conn_id)
        assert variable == local_env.connection_variable(conn_id)
        assert variable.startswith(local_env.ALERT_VARIABLE_PREFIX)


# -- what `make up` prints ---------------------------------------------------------------------------


def test_summary_names_both_channels_and_where_each_comes_from():
    lines = stack_driver.alert_summary(
        {"AIRFLOW_CONN_HR_ALERTS_SMTP": SMTP, "AIRFLOW_CONN_HR_ALERTS_WEBHOOK": WEBHOOK},
        sources={
            "AIRFLOW_CONN_HR_ALERTS_SMTP": "your environment",
            "AIRFLOW_CONN_HR_ALERTS_WEBHOOK": ".local/airflow.env",
        },
    )
    assert lines == [
        "  Failure alerts: email via hr_alerts_smtp (AIRFLOW_CONN_HR_ALERTS_SMTP from your environment), "
        "webhook via hr_alerts_webhook (AIRFLOW_CONN_HR_ALERTS_WEBHOOK from .local/airflow.env)"
    ]
    assert "secret" not in lines[0]
    assert "127.0.0.1" not in lines[0]


def test_summary_with_no_channel_says_so_and_how_to_set_one():
    lines = stack_driver.alert_summary({"AIRFLOW_CONN_HR_ALERTS_SMTP": ""})
    assert len(lines) == 2
    assert lines[0] == "  Failure alerts: NONE configured: a failed task alerts nobody"
    for named in ("AIRFLOW_CONN_HR_ALERTS_SMTP", "AIRFLOW_CONN_HR_ALERTS_WEBHOOK", "make up", "README"):
        assert named in lines[1], (named, lines[1])


def test_summary_of_one_channel_names_the_missing_one():
    lines = stack_driver.alert_summary({"AIRFLOW_CONN_HR_ALERTS_WEBHOOK": WEBHOOK})
    assert lines == [
        "  Failure alerts: webhook via hr_alerts_webhook (AIRFLOW_CONN_HR_ALERTS_WEBHOOK from your "
        "environment); no email (set AIRFLOW_CONN_HR_ALERTS_SMTP)"
    ]


def test_summary_counts_connections_made_in_the_ui():
    lines = stack_driver.alert_summary({}, in_database={"hr_alerts_smtp"})
    assert lines == [
        "  Failure alerts: email via hr_alerts_smtp (Admin > Connections); no webhook "
        "(set AIRFLOW_CONN_HR_ALERTS_WEBHOOK)"
    ]


def test_summary_says_which_value_airflow_cannot_read():
    lines = stack_driver.alert_summary(
        {
            "AIRFLOW_CONN_HR_ALERTS_SMTP": '{"conn_type": "smtp", "host": ',
            "AIRFLOW_CONN_HR_ALERTS_WEBHOOK": WEBHOOK,
        }
    )
    assert len(lines) == 1
    assert lines[0].startswith("  Failure alerts: webhook via hr_alerts_webhook (")
    assert (
        "email via hr_alerts_smtp is NOT usable: AIRFLOW_CONN_HR_ALERTS_SMTP (from your environment) "
        in lines[0]
    )
    assert "not valid JSON" in lines[0]

    only_broken = stack_driver.alert_summary({"AIRFLOW_CONN_HR_ALERTS_WEBHOOK": "hooks.example"})
    assert only_broken[0].startswith("  Failure alerts: NONE configured: a failed task alerts nobody; ")
    assert (
        "AIRFLOW_CONN_HR_ALERTS_WEBHOOK (from your environment) is neither JSON nor a URI" in only_broken[0]
    )
