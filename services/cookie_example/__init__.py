"""A browser-style example node: tokens in cookies with CSRF double submit, on revsync.

Served by ``hypercorn services.cookie_example.app:app``; configured only by
environment variables (see ``services.cookie_example.settings``).
"""
