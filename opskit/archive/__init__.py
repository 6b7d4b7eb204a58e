"""Archives on disk: formats, compression, manifests, rotation, locks and space."""
