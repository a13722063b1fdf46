"""``memoram-auth agent``: one process holds the key and hands out tokens on a Unix socket.

``protocol`` is the wire format (HTTP/1.1, JSON bodies, limits) that both sides share;
``client`` is what the adapters and the command line use when ``MEMORAM_AUTH_SOCK`` is set;
``server`` is the agent itself, with the package's provider behind it.
"""
