"""Shadows waitress on PYTHONPATH in a test: an environment that lacks the WSGI server."""
raise ImportError("waitress is not installed in this test environment")
