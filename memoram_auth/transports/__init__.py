"""Sending a token request (:class:`~memoram_auth.core.steps.TokenRequest`) with an HTTP library.

One module per library, each turning the library's answer into a
:class:`~memoram_auth.core.steps.RawResponse` and its failures into a
:class:`~memoram_auth.core.steps.TransportError`. The stdlib transport and the network settings
are :mod:`memoram_auth.transport`. Internal.
"""
