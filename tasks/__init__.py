"""Stage modules; importing them first sets offline defaults (no model hub, no price-list download, no telemetry)."""

from tasks.env import set_offline_defaults

set_offline_defaults()
