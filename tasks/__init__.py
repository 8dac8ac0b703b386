"""Stage modules: one per stage, plus the run store, the LLM client and the report helpers. Importing them changes no
environment variable (tasks/env.py)."""
