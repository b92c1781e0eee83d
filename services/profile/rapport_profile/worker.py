"""`python -m rapport_profile.worker` runs the ingest worker (see rapport_profile.entrypoints.worker)."""

from rapport_profile.entrypoints.worker import main

if __name__ == "__main__":
    main()
