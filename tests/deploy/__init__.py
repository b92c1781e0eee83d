"""Offline checks of deploy/: the image recipe and every kustomize overlay."""
