"""Security: API keys, redaction of secrets."""
