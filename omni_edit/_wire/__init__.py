"""The wire, without I/O: JSON to models (one cattrs converter), what an answer means and
whether to retry it (the protocol), and the local checks made before anything is sent.

Everything here is a pure function of its arguments, tested without a network. It
imports only the package's bottom layer (constants, models, errors).
"""
