"""akua_operator.akua."""
