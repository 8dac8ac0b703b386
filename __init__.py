"""domain-embed: fine-tune an embedding model on a folder of documents.

The checkout's root is the import package `domain_embed` (pyproject.toml maps it with setuptools' package-dir):
`domain_embed.flows` (flows/: the Prefect flows, the CLI, server mode), `domain_embed.tasks` (tasks/: the stages)
and `domain_embed.deployments` (deployments/: work pools, automations); prefect.yaml ships beside them as package
data. Importing any of them changes no environment variable: the entrypoints apply the offline defaults.
"""
