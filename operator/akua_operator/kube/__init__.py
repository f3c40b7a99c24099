"""akua_operator.kube."""
