"""Rapport router service."""
