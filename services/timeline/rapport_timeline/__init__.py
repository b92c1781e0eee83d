"""Rapport timeline service."""
