"""What a registered version holds and what the registry vouches for: its metadata schema (schema)
and its file manifest (manifest). The package stage writes them; the server checks them."""
