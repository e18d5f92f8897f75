"""The example API node: the seed program's endpoints on revsync, plus admin, health and metrics.

Served by ``hypercorn services.api.app:app``; configured only by environment variables
(see ``services.api.settings``).
"""
