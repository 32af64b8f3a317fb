"""Media: a clip's facts from its MP4 header boxes, and the byte sources they are read
from (a local file, or Range requests to a media host that never sees the API key); and,
with the optional ``media`` extra (PyAV), whole-clip work run in worker threads.
"""
