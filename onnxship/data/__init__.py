"""prepare, and the two kinds of data every later stage reads: feature rows (tables, features)
and series (series); a model's workload (workloads: Rows or Series) is what a stage asks for."""
