"""SQL migrations, applied in order by softswitch.core.migrate."""
