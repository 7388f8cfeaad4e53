"""arena-adapters plugin for the vla-evaluation-harness model-server protocol (WebSocket + msgpack)."""

__version__ = "0.1.0"
