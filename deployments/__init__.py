"""The server's setup: work pools from the base job templates beside this file (pools.py), the crash-detection
automation (crash_detection.py). `domain-embed up` runs them as `python -m domain_embed.deployments.<module>`."""
