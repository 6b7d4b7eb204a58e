"""Off-site copies through restic: settings, the push, retention, listing, restore, checks.

restic does the hard parts (encryption, content-defined deduplication, retention, every
storage backend); opskit feeds it each verified dump uncompressed, tags the snapshots so
that every host and project keeps its own history, and reads them back through the same
safe restore path as a local archive.
"""
