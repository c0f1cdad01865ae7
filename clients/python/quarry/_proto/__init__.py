"""Generated protobuf and gRPC stubs for ``quarry.v1`` (made by ``gen.sh``; do not edit)."""
