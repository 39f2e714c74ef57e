"""Data: the categorical codec, HDF5 shards of episodes, manifests, and a torch Dataset over shards."""
