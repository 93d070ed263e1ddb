from nomadkit.lab.testing import lab  # noqa: F401  (the session's booted lab kits)
