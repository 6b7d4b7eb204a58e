"""What past runs say: durations, the JSON log, anomalies, metrics and charts."""
