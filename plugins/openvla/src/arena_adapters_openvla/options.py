"""The declared options of the ``openvla`` parts (what ``arena-adapters info openvla`` lists)."""

from __future__ import annotations

from arena_adapters.options import Option
from arena_adapters.transport import RETRY_OPTIONS, limit_options, server_limit_options
from arena_adapters_openvla.observations import (
    DEFAULT_IMAGE_KEY,
    DEFAULT_RESIZE,
    DEFAULT_STATE_KEYS,
    DEFAULT_WRIST_CAMERAS,
    VARIANTS,
)
from arena_adapters_openvla.probe import PROBE_INSTRUCTION
from arena_adapters_openvla.transport import MAX_REPLY_BYTES

PROTOCOL = "openvla"

VARIANT_OPTION = Option("variant", str, "openvla", "server flavour: 'openvla' (one action) or 'oft' (action chunk)",
                        choices=VARIANTS)

API_KEY_OPTION = Option("api_key", str, None, "bearer token sent as 'Authorization: Bearer KEY' (the reference "
                        "server's api_key, or an authenticating proxy's)", secret=True)

TLS_OPTIONS = (
    Option("ca_file", str, None, "PEM file of certificate authorities to trust for https endpoints"),
    Option("verify", bool, True, "check the https server's certificate (false: accept any, for test servers)"),
)

TRANSPORT_OPTIONS = (
    Option("endpoint", str, "http://127.0.0.1:8000", "server URL http(s)://HOST:PORT[/prefix]; comma-separated "
           "for replicas"),
    Option("timeout", float, 30.0, "seconds for one call: connecting, sending and the whole reply", above=0),
    Option("max_concurrency", int, 16, "per-env requests in flight at once, per server", minimum=1),
    Option("encoded", bool, False, "send the double-encoded {'encoded': ...} form"),
    API_KEY_OPTION,
    Option("api_key_header", str, "Authorization", "header carrying api_key ('Bearer KEY' for Authorization)"),
    *TLS_OPTIONS,
    *limit_options(max_message_bytes=MAX_REPLY_BYTES),
    *RETRY_OPTIONS,
)

OBSERVATION_OPTIONS = (
    VARIANT_OPTION,
    Option("image_key", str, DEFAULT_IMAGE_KEY, "observation path of the main uint8 (N,H,W,3) camera"),
    Option("resize", str, DEFAULT_RESIZE, "'HxW' to resize with padding on the env device, or 'none'"),
    Option("unnorm_key", str, None, "OpenVLA dataset statistics to un-normalize with, e.g. 'bridge_orig'"),
    Option("wrist_cameras", object, DEFAULT_WRIST_CAMERAS,
           "OFT wrist cameras in wire order: 'wire_key=obs.path,...' (keys must contain 'wrist')"),
    Option("state_keys", object, DEFAULT_STATE_KEYS, "OFT: observation paths concatenated into 'state'"),
    Option("state_dim", int, None, "OFT: expected width of 'state' (LIBERO 8, ALOHA 14, BRIDGE 7)"),
)

ACTION_OPTIONS = (
    Option("action_select", object, None, "reply components to keep, in env order, e.g. '0,1,2,3,4,5,6'"),
    Option("action_dim", int, None, "env action width; the reply is padded with zeros up to it"),
)

SERVER_OPTIONS = (
    Option("port", int, None, "port (default 8000, or 8777 with variant oft; 0 picks a free one)"),
    VARIANT_OPTION,
    Option("chunk_size", int, 8, "OFT dummy policy: actions per chunk", minimum=1),
    Option("action_dim", int, 7, "OFT dummy policy: action width", minimum=1),
    Option("access_log", bool, False, "log every request"),
    Option("log_level", str, "warning", "uvicorn log level"),
    Option("api_key", str, None, "require 'Authorization: Bearer KEY' on every request (401 otherwise)",
           secret=True),
    *server_limit_options(),
    Option("fault_injector", object, None, "fn(reply_bytes) -> ReplyFault | None, called before each POST /act "
           "reply (fault-injection tests), or its 'module:attr'"),
    Option("handler_threads", int, 40, "policy calls that can run at once (threads started with the server)",
           minimum=1),
)

PROBE_OPTIONS = (
    VARIANT_OPTION,
    Option("instruction", str, PROBE_INSTRUCTION, "instruction of the synthetic observation"),
    Option("unnorm_key", str, None, "OpenVLA: unnorm_key sent with the synthetic observation"),
    Option("image_size", int, 224, "side of the synthetic square images", minimum=1),
    Option("wrist_images", int, 1, "OFT: wrist cameras in the synthetic observation"),
    Option("state_dim", int, 8, "OFT: width of the synthetic state (0: no state)"),
    Option("action_dim", int, None, "expected action width of the reply (unchecked if unset)"),
    Option("encoded", bool, False, "use the double-encoded {'encoded': ...} form"),
    API_KEY_OPTION,
    *TLS_OPTIONS,
    Option("repeats", int, 3, "extra requests timed for the latency step"),
)
