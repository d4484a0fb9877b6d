"""People, keys and access: accounts with argon2id passwords, API tokens, page sessions, the
throttle on guessing, the one rule of which items a principal may see, and the audit log."""
