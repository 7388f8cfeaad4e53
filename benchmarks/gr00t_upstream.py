"""The upstream GR00T serializer's work, re-enacted for timing (see :mod:`arena_adapters.bench.codecs`)."""

from arena_adapters.bench.codecs import gr00t_upstream_decode as upstream_decode
from arena_adapters.bench.codecs import gr00t_upstream_encode as upstream_encode

__all__ = ["upstream_decode", "upstream_encode"]
