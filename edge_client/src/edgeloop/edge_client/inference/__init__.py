"""On-device inference: LiteRT interpreter, verified model store, background updates."""
