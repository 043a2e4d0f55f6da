"""The gRPC API: the protos (Python code generated at install time), servicers and the client."""
