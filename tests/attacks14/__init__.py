"""Adversarial probes of the JWT claim checks (attack 14)."""
