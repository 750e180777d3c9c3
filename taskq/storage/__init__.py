"""Storage: every Redis key, Lua script and command of taskq."""
