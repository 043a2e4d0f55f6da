"""The APIs: thin adapters over ``pyexchange.service`` (gRPC today, REST/WebSocket next)."""
