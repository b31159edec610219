"""The parts of a next-best-message decision (``segments.decide``), one concept per module:
messaging channels and consent, caps, send time (validity, quiet hours, best hour), holdouts."""
