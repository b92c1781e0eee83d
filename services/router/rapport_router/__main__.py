"""`python -m rapport_router` runs the router's gRPC server."""

from rapport_router.entrypoints.server import main

main()
