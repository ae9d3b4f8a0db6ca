"""summarize: the zoo's summary table (summary) and its figures (plots)."""
