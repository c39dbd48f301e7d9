"""The periodic jobs and the scheduler inside the service that runs them (issue 15.6):
triggers as pure functions (``triggers``), one run per due period across every instance
(``scheduler``), the job list (``catalogue``) and its commands (``cli``)."""
