"""Variant sampling."""
