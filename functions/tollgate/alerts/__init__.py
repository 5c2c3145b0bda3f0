"""Usage alerts off the hot path: the table's stream -> crossings -> EventBridge, once per alert."""
