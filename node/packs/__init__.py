"""Model packs: the protocol every pack implements and the registry of packs by name.

The rest of the node reaches :mod:`models` only through :mod:`node.packs.registry`.
"""
