"""The gRPC API: exchange.proto and the code grpcio-tools generates from it at build time."""
