"""The service layer every API adapts: order entry, queries, admin and auth (docs/service.md)."""
