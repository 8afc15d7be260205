"""The run machinery: sessions, records and manifests, the cache, fingerprints, costs, seeds, paths, locks."""
