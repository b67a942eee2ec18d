"""The core library: instance configuration, installation identity, licence format and rules,
the sync protocol. It imports neither the web app nor any command line."""
