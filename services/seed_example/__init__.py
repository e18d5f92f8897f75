"""quart-jwt-extended's blacklist example, switched to revsync.jwt by its import line."""
