"""Polling: when a task is read next (the policy, a pure function) and the one scheduler
every wait of a client shares.
"""
