"""Rating and prepaid: tariffs, reservations and settlement (see the prepaid issue)."""
