"""What finished runs show: reports with plots, retention tables over seeds and methods, rliable
aggregates. Reads run directories; trains nothing."""
