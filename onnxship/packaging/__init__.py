"""package: choose the variant to register (choice), build its version folder and register it
with its gates and lineage (build)."""
