"""The core: getting and keeping tokens, as plain steps, with no HTTP library and no I/O.

Nothing in here imports a transport, the plugin manager or an HTTP library, eagerly or lazily
(``tests/test_layering.py`` checks it); what it needs from outside (how to send a token
request, where events go, which cache) it is given. See ARCHITECTURE.md.
"""
