"""The FHVHV domain as data and pure functions: schema, casts, quality rules, code versions, zones, digests.

Nothing here reads a file, talks to a service or imports another layer of the package (only ``taxi_assets.errors``,
a leaf): the rules can be read, tested and reused on their own. ``tests/test_layers.py`` checks the contract.
"""
