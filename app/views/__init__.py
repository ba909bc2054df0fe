"""One Blueprint `bp` per module: pages (HTML), api (JSON), errors (both)."""
