"""Prefect flows, the CLI and the notebook API. Importing them changes no environment variable: the entrypoints
(flows/cli.py main, flows/deployed.py, flows/api.py) apply the offline defaults of tasks/core/env.py."""
