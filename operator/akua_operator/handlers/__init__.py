"""akua_operator.handlers."""
