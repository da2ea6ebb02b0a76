"""The modalities, in their fixed order: index 0 events, index 1 audio. Every stage (the
scheduler's presence flags, the network's inputs and attention, the metrics) indexes them so."""

MODALITIES: tuple[str, ...] = ("events", "audio")
