"""Generated protobuf modules of proto/profiles/pb/ (`make proto`); do not edit."""
