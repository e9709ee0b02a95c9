"""Readers and writers of SPN files. Each reader parses everything before building a FlatSPN, so a
malformed file loads nothing."""
