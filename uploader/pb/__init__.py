"""Generated protobuf modules of proto/uploader/pb/ (`make proto`); do not edit."""
