"""The ProfileService: the 360° customer view, identity resolution and merge candidates over gRPC.

Rooms, as in the rest of the service: `config` (settings), `customer_view` and
`candidate_pages` (pure rules: requests, view building, sentiment, pagination),
`graph_reader` (all Cypher), `servicer` (the gRPC entrypoint), `bootstrap` (builds and runs it).
Run it with `python -m rapport_profile`.
"""
