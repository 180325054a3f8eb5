"""Public randomness from a drand beacon (fairness v2): the pinned chain, the verification of a
round's BLS signature, and the client that fetches a round from HTTP relays (drand.py)."""
