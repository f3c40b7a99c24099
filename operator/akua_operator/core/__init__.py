"""akua_operator.core."""
