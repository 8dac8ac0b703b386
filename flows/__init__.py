"""Prefect flows and the CLI; importing them first sets offline defaults (also in workers running deployments)."""

from flows.env import set_offline_defaults

set_offline_defaults()
