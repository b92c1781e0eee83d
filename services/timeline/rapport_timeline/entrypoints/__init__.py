"""The gRPC servicer and the process entrypoint."""
