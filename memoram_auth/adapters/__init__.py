"""The adapters: one per HTTP library, each thin, each importing its library.

``base`` is what they share with no HTTP library (resolved settings, the provider, which
requests get the token); ``requests``, ``httpx`` and ``aiohttp`` put the token on their
library's requests and replay once after a 401. Internal: the public names are
``memoram_auth.MemoramAuth`` and ``memoram_auth.MemoramMiddleware``.
"""
