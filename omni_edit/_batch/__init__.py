"""Bulk editing: ``edit_many``'s workers, its lazily read inputs and the journal that
makes a batch resumable. It drives the client through a small protocol (``ports``),
never through ``Client`` itself.
"""
