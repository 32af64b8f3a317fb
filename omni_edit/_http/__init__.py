"""HTTP: the transport that carries API requests, the download of result files, and the
client-wide limits both share (the in-flight cap, the 429 pause, the retry budget).

The only layer that turns protocol decisions (``_wire``) into aiohttp calls.
"""
