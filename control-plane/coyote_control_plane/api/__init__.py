"""The HTTP API: routes in ``routes/``, shared dependencies in ``deps``."""
