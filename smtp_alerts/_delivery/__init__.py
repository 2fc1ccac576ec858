"""The delivery layer: policy and breakers, the fallback chain, channels from settings, the auth
watcher, diagnosis, serialisation and the spool."""
