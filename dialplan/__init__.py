"""Call routing: pure decision functions of (snapshot, call, now) and the snapshot they read."""
