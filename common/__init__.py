"""The contract between framecast services: config, Redis keys, the frame envelope, connections,
logging and metrics. Services import `common`; no service imports another service."""
