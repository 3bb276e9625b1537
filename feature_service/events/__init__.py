"""Events as they arrive: raw records parsed and checked against a source's schema.

Shared by everything that accepts events (the stream worker, `/push`, the SDK), so
they accept and refuse exactly the same ones, without the serving layer importing the
stream layer.
"""
