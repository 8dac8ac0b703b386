"""The stages, one subpackage each, and their settings: core (plumbing), ingest, embedding, llm, questions, mining,
training, evaluation, publishing. Importing them changes no environment variable (tasks/core/env.py)."""
