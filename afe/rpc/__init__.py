"""AFE's JSON-RPC API: the wire format, the method registry, the endpoints and the methods by topic."""
