"""How the profile service is driven: the Faust ingest worker."""
