"""akua_operator.sim."""
