"""The web service around a loaded variational digit network."""
