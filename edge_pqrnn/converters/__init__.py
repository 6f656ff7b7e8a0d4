"""Graph surgery and format conversion of the exported model."""
