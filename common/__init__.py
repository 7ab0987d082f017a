"""Plumbing below every app: crypto helpers, outbound HTTP, problem details, safe redirects,
rate-limit counters and the client-address fingerprint of audit rows.

The bottom layer (pyproject.toml, [tool.importlinter]): it imports Django and third-party
libraries only, never an app of the project. It has no models, so it is not a Django app.
"""
