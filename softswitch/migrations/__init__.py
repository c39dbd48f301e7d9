"""SQL migrations, applied in order by softswitch.migrate."""
