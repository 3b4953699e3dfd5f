"""The PostgreSQL URL (it may hold a password) never lands in the code location's snapshot: the
resources take it as ``dg.EnvVar("ADMF_POSTGRES_URL")``, resolved when a run or sensor uses them."""

from __future__ import annotations

import dagster as dg
from dagster_shared.serdes import serialize_value

from admf_assets.defs.resources import build_resources
from admf_assets.lib.pipeline import code_location, with_overrides
from admf_assets.lib.settings import Settings

URL = "postgresql+psycopg2://admf:S3cretPW@db.example:5432/admf"


def test_postgres_password_is_not_in_resource_config_or_job_snapshots(monkeypatch):
    monkeypatch.setenv("ADMF_POSTGRES_URL", URL)
    settings = with_overrides(Settings.from_env(), postgres_url=URL, signal_store=True)
    location = code_location(settings)
    repo = location.get_repository_def()
    for job in ("archive_job", "market_data_job", "analytics_job"):
        assert serialize_value(repo.get_job(job).get_job_snapshot()).count("S3cretPW") == 0, job
    # the resources still resolve the URL where it is used
    resources = build_resources(settings)
    with dg.build_resources({"retention": resources["retention"], "storage_thresholds": resources["storage_thresholds"]}) as built:
        assert built.retention.postgres_url == URL
        assert built.storage_thresholds.postgres_url == URL


def test_a_url_given_in_code_is_kept_literally(monkeypatch):
    monkeypatch.delenv("ADMF_POSTGRES_URL", raising=False)
    settings = with_overrides(Settings.from_env(), postgres_url="postgresql+psycopg2://u@h/db", signal_store=True)
    with dg.build_resources({"retention": build_resources(settings)["retention"]}) as built:
        assert built.retention.postgres_url == "postgresql+psycopg2://u@h/db"
