"""akua_operator.resource."""
