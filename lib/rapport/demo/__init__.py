"""`python -m rapport.demo`: Rapport's whole job, live, in a few minutes (see rapport.demo.run)."""
