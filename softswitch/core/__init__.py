"""What every part of the runtime stands on: typed settings, the injected clock, metrics,
number masking, the database pool and the migrations. Imports nothing else of the
project but the pure packages."""
