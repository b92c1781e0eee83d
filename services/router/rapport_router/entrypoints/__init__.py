"""The gRPC servicer and the server process."""
