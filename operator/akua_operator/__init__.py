"""akua-operator: run Akua clusters (akua.dev) as Kubernetes ``AkuaCluster`` resources."""

__version__ = "0.1.0"
