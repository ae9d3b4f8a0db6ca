"""validate: does each variant answer like native? Feature rows (rows), forecasts (forecasts),
the hostile inputs they are also judged on (hostile), and one case per model (cases)."""
