"""Decoding: sampling rules and the decode loop."""
