"""Development tooling, not the runtime: the local stack (PostgreSQL, Asterisk in a
chroot), the SIPp driver and its RFC 2833 packets, the demo, and the service run as a
child process for tests and benchmarks."""
