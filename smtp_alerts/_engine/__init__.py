"""The engine layer: intake, capture, aggregation, limits, rendering, the loop and the core."""
